"""The tx topics' validators against a hostile relayer: txs pay (the mempool's precheck) before their signature,
and relaying txs nobody can pay for costs the relayer score, lightly (see ``bootstrap.gossip.txs``)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from bootstrap.gossip import TOPIC_TX, TOPIC_TXS, TxTopics, encode_tx_batch
from bootstrap.gossip.txs import UNFUNDED_BLAME, UNFUNDED_BLAME_CAP
from bootstrap.sync import BlockSync
from ledger import mempool as mempool_module
from ledger.mempool import Admission, Mempool, MempoolConfig
from ledger.rules import apply_tx
from ledger.tx import SignedTx
from p2pnet.framing import GossipMessage, GossipRPC
from p2pnet.gossip import Gossip, ValidationResult
from tests.ledger.factories import Wallet, ctx, make_state
from tests.p2pnet.fakes import router

FUNDED = [f"rich-{i}" for i in range(8)]


class Rig:
    """A mempool over a genesis with funded wallets, its tx topics and a gossip router that calls them; every
    signature verification is counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **mempool: int) -> None:
        state = make_state(balances={name: 10**9 for name in FUNDED})
        self.mempool = Mempool(state.chain_id, state, MempoolConfig(**mempool))
        self.admitted: list[Admission] = []
        self.counters = {k: 0 for k in ("txs_gossip_in", "txs_gossip_rejected", "tx_batches_in",
                                        "tx_batch_txs_in", "tx_batches_rejected")}
        self.gossip, self.host = router()
        self.topics = TxTopics(self.mempool, self.admitted.append, self.counters, self.gossip.note_invalid)
        self.verified = 0
        real = mempool_module.verify_tx_signature

        def counting(stx: SignedTx, chain_id: str) -> None:
            self.verified += 1
            real(stx, chain_id)

        monkeypatch.setattr(mempool_module, "verify_tx_signature", counting)

    def subscribe(self) -> Gossip:
        self.gossip.subscribe(TOPIC_TX, self.topics.validate_tx)
        self.gossip.subscribe(TOPIC_TXS, self.topics.validate_tx_batch)
        return self.gossip


def batch(txs: list[SignedTx]) -> bytes:
    return encode_tx_batch([t.encode() for t in txs])


async def test_a_stream_of_unfunded_txs_costs_no_signature_check_and_sinks_its_relayer(monkeypatch) -> None:
    """~100k validly signed txs from wallets without a coin, in 256-tx batches, through the router: not one
    signature is verified, and the flooder's score sinks below 0, to the graylist within a heartbeat (12 batches
    at the per-message cap) and then to a ban; an honest peer relaying funded txs, and now and then one whose funds were
    spent meanwhile, keeps a score ≥ 0 through heartbeats."""
    rig = Rig(monkeypatch)
    gossip = rig.subscribe()
    flooder, honest = rig.host.connect(), rig.host.connect()
    for p in (flooder, honest):
        gossip.add_peer(p)
    rng = random.Random(1)
    broke = [Wallet(f"broke-{i}") for i in range(64)]
    pool = [w.transfer(broke[0].account, 1, nonce=n) for w in broke for n in range(32)]  # 2048 distinct txs
    streamed = 0
    for i in range(400):  # 102,400 txs, each batch distinct (its own message id)
        await gossip.handle_rpc(flooder, GossipRPC(messages=[GossipMessage(TOPIC_TXS, batch(rng.sample(pool, 256)))]))
        streamed += 256
        if i == 11:  # 12 batches at the cap (3.0 > √8): graylisted, what it sends next goes unread
            assert gossip.score(flooder) < gossip.config.graylist_threshold and not rig.host.bans
    assert streamed >= 100_000 and rig.verified == 0 and not rig.admitted
    assert gossip.score(flooder) < 0 and all(p == flooder for p, _ in rig.host.bans)
    assert rig.counters["txs_gossip_unfunded"] == 12 * 256  # then graylisted: the rest was never looked at

    rich = [Wallet(name) for name in FUNDED]
    spent = Wallet("broke-spent")  # a sender whose funds went elsewhere while its tx travelled
    for beat in range(40):
        txs = [w.transfer(spent.account, 1, nonce=beat) for w in rich]
        await gossip.handle_rpc(honest, GossipRPC(messages=[GossipMessage(TOPIC_TXS, batch(txs))]))
        late = spent.transfer(rich[0].account, 1, nonce=beat)
        await gossip.handle_rpc(honest, GossipRPC(messages=[GossipMessage(TOPIC_TX, late.encode())]))
        assert gossip.score(honest) >= 0
        gossip.heartbeat()
    assert rig.verified == 40 * len(rich) == len(rig.admitted)
    assert gossip.score(honest) > 0 and gossip.scores[honest].invalid < 0.02
    assert not any(p == honest for p, _ in rig.host.bans)


def test_unfunded_txs_blame_lightly_with_a_cap_per_message(monkeypatch) -> None:
    rig = Rig(monkeypatch)
    peer = rig.host.connect()
    broke = Wallet("broke")
    one = broke.transfer(broke.account, 1, nonce=0)
    assert rig.topics.validate_tx(peer, one.encode()) is ValidationResult.IGNORE
    assert rig.gossip.scores[peer].invalid == pytest.approx(UNFUNDED_BLAME)
    three = [broke.transfer(broke.account, 1, nonce=n) for n in range(1, 4)]
    assert rig.topics.validate_tx_batch(peer, batch(three)) is ValidationResult.IGNORE
    assert rig.gossip.scores[peer].invalid == pytest.approx(4 * UNFUNDED_BLAME)
    many = [broke.transfer(broke.account, 1, nonce=n) for n in range(4, 260)]
    rig.topics.validate_tx_batch(peer, batch(many))
    assert rig.gossip.scores[peer].invalid == pytest.approx(4 * UNFUNDED_BLAME + UNFUNDED_BLAME_CAP)
    assert rig.verified == 0 and rig.counters["txs_gossip_unfunded"] == 260
    # a node behind the chain blames nobody: those senders may be funded in the blocks it lacks
    rig.topics.lagging = lambda: True
    rig.topics.validate_tx_batch(peer, batch(three))
    assert rig.gossip.scores[peer].invalid == pytest.approx(4 * UNFUNDED_BLAME + UNFUNDED_BLAME_CAP)


def test_what_the_precheck_refuses_costs_no_signature_and_no_blame(monkeypatch) -> None:
    """Stale nonces, a nonce already pending, a fee below the minimum and high-water refusals are skipped before
    the signature check and blame nobody (honest relayers see those races); a bad signature on a tx that passes
    the precheck still rejects the batch."""
    rig = Rig(monkeypatch, max_txs=4, high_water_permille=750)
    peer = rig.host.connect()
    a, b, c, d, e = (Wallet(n) for n in FUNDED[:5])
    first = [a.transfer(e.account, 1, nonce=0, fee=3), b.transfer(e.account, 1, nonce=0, fee=3),
             c.transfer(e.account, 1, nonce=0, fee=3)]
    assert rig.topics.validate_tx_batch(peer, batch(first)) is ValidationResult.ACCEPT
    state, _ = apply_tx(rig.mempool.state, first[0], ctx(1))  # a block takes a's tx: its nonce 0 is stale now
    rig.mempool.update(state, [first[0].tx_id])
    assert rig.topics.validate_tx(peer, a.transfer(e.account, 1, nonce=1, fee=3).encode()) is ValidationResult.ACCEPT
    assert rig.verified == 4 and len(rig.mempool) == 3  # at the high-water mark (3 of 4)
    stale = a.transfer(e.account, 2, nonce=0, fee=3)
    pending_again = b.transfer(e.account, 2, nonce=0, fee=3)  # another tx for b's pending nonce
    cheap = d.transfer(e.account, 1, nonce=0, fee=3)  # above the high-water mark, displaces nothing
    low_fee = d.transfer(e.account, 1, nonce=0, fee=0)
    forged_cheap = SignedTx(cheap.tx, cheap.body_bytes, bytes(64))
    for junk in ([stale, pending_again, cheap, low_fee], [forged_cheap]):
        assert rig.topics.validate_tx_batch(peer, batch(junk)) is ValidationResult.IGNORE
    for one in (stale, pending_again, cheap, low_fee, forged_cheap):
        assert rig.topics.validate_tx(peer, one.encode()) is ValidationResult.IGNORE
    assert rig.verified == 4 and rig.mempool.refused_high_water >= 4
    assert peer not in rig.gossip.scores or rig.gossip.scores[peer].invalid == 0
    rich_forged = d.transfer(e.account, 1, nonce=0, fee=9)  # pays more than every tail: passes the precheck
    assert rig.topics.validate_tx_batch(
        peer, batch([SignedTx(rich_forged.tx, rich_forged.body_bytes, bytes(64))])) is ValidationResult.REJECT
    assert rig.verified == 5 and rig.counters["tx_batches_rejected"] == 1


def test_block_sync_says_behind_once_a_vote_of_a_later_height_arrives() -> None:
    """``lagging`` for the tx topics: deciding height 6 over a chain at 5 is in step; a validly signed message of
    height 7 means block 6 exists and we lack it, until it is applied."""
    chain = SimpleNamespace(height=5)
    sync = BlockSync(chain, {}, 1.0)  # type: ignore[arg-type]
    sync.wake(6)
    assert not sync.is_behind()
    sync.wake(7)
    assert sync.is_behind()
    chain.height = 6
    assert not sync.is_behind()
