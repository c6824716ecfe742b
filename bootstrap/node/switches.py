"""Test-only switches that make a node misbehave for the chaos and Byzantine tests (all off by default).

:class:`TestSwitches` is read from ``DACN_TEST_*`` environment variables: a skewed block clock, SIGUSR1 cutting
every peer link for a while, a Byzantine validator (equivocating votes, invalid proposals, gossip spam), and a
validator that kills itself (SIGKILL) right after sending its N-th prevote or precommit, mid-height.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from bootstrap.consensus import BYZANTINE_MODES
from bootstrap.errors import NodeError
from bootstrap.gossip import TOPIC_CONSENSUS, TOPIC_TX
from ledger.tx import SignedTx, Transfer, make_tx
from p2pnet import P2PError

log = logging.getLogger("bootstrap.node")

MAX_CLOCK_SKEW_MS = 60_000


class TestSwitchError(NodeError):
    """A ``DACN_TEST_*`` variable holds a value the node cannot use; ``field`` names the variable."""

    __test__ = False

    def __init__(self, field: str, value: str, reason: str) -> None:
        super().__init__(f"{field}={value!r:.80}: {reason}")
        self.field, self.value = field, value


@dataclass(frozen=True)
class TestSwitches:
    """Test-only faults. ``byzantine``: modes from ``bootstrap.consensus.BYZANTINE_MODES`` (``spam`` floods gossip
    with invalid txs and consensus garbage at ``spam_rate`` messages/s); ``clock_skew_ms``: offset of the block
    clock (bounded by ``MAX_CLOCK_SKEW_MS``); ``isolate_signal``: SIGUSR1 cuts every peer link for ``isolate_s``."""

    __test__ = False  # not a pytest test class, whatever its name

    byzantine: frozenset[str] = frozenset()
    clock_skew_ms: int = 0
    isolate_signal: bool = False
    isolate_s: float = 5.0
    spam_rate: int = 200
    crash_at: tuple[str, int] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TestSwitches:
        """``DACN_TEST_BYZANTINE`` (comma-separated modes), ``DACN_TEST_CLOCK_SKEW_MS``, ``DACN_TEST_ISOLATE_S``
        (enables SIGUSR1), ``DACN_TEST_SPAM_RATE``, ``DACN_TEST_CRASH_AT`` (``prevote:N`` or ``precommit:N``)."""
        env = os.environ if env is None else env
        raw = env.get("DACN_TEST_BYZANTINE", "")
        modes = frozenset(m.strip() for m in raw.split(",") if m.strip())
        if modes - BYZANTINE_MODES:
            raise TestSwitchError("DACN_TEST_BYZANTINE", raw, f"known modes: {', '.join(sorted(BYZANTINE_MODES))}")

        def number(name: str, default: float, lo: float, hi: float) -> float:
            text = env.get(name, "")
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                raise TestSwitchError(name, text, "not a number") from None
            if not lo <= value <= hi:
                raise TestSwitchError(name, text, f"must be within [{lo:g}, {hi:g}]")
            return value

        skew = number("DACN_TEST_CLOCK_SKEW_MS", 0, -MAX_CLOCK_SKEW_MS, MAX_CLOCK_SKEW_MS)
        isolate = number("DACN_TEST_ISOLATE_S", 0, 0, 3600)
        rate = number("DACN_TEST_SPAM_RATE", 200, 1, 100_000)
        crash_at = None
        crash = env.get("DACN_TEST_CRASH_AT", "")
        if crash:
            kind, _, count = crash.partition(":")
            if kind not in ("prevote", "precommit") or not count.isdigit() or int(count) < 1:
                raise TestSwitchError("DACN_TEST_CRASH_AT", crash, "expected prevote:N or precommit:N, N >= 1")
            crash_at = (kind, int(count))
        return cls(byzantine=modes, clock_skew_ms=int(skew), isolate_signal=isolate > 0,
                   isolate_s=isolate or 5.0, spam_rate=int(rate), crash_at=crash_at)

    @property
    def active(self) -> bool:
        return bool(self.byzantine or self.clock_skew_ms or self.isolate_signal or self.crash_at)


def isolate(host: Any, seconds: float) -> int:
    """Test-only: cut every peer link of ``host`` and refuse those peers for ``seconds`` (then discovery
    reconnects). Returns how many links were cut."""
    if host is None:
        return 0
    peers = host.peers()
    for peer in peers:
        host.ban(peer, "test switch: links cut", seconds)
    return len(peers)


async def spam(node: Any, rate: int) -> None:
    """Test-only Byzantine spam: garbage and badly signed txs on the tx topic, garbage on consensus, at ``rate``
    messages a second."""
    host, identity, chain = node.host, node.identity, node.chain
    assert host is not None and identity is not None and chain is not None
    me = identity.signing_key
    i = 0
    while True:
        i += 1
        kind = i % 3
        if kind == 0:
            topic, data = TOPIC_TX, secrets.token_bytes(64 + i % 200)
        elif kind == 1:
            stx = make_tx(Transfer(to=secrets.token_bytes(32), amount=1), me, chain.chain_id,
                          nonce=chain.state.nonce(identity.public_key) + i, fee=1)
            forged = SignedTx(stx.tx, stx.body_bytes, bytes(64))  # a signature that cannot verify
            topic, data = TOPIC_TX, forged.encode()
        else:
            topic, data = TOPIC_CONSENSUS, secrets.token_bytes(100)
        try:
            await host.gossip.publish(topic, data)
        except P2PError as exc:
            log.debug("spam publish failed: %s", exc)
        node.counters["spam_sent"] = node.counters.get("spam_sent", 0) + 1
        await trio.sleep(1 / rate)
