"""The consensus topic (``dacn/consensus/1``): proposals and votes checked before they are forwarded, then
handed to the consensus driver decoded once."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bootstrap.errors import WireError
from bootstrap.gossip.wire import ConsensusMsg, ProposalMsg, RoundStateMsg, decode_consensus
from ledger.chain import Chain
from p2pnet import PeerId, Received, ValidationResult

log = logging.getLogger("bootstrap.node")

# Consensus messages decoded by the gossip validator and not yet delivered to the driver.
CONSENSUS_DECODED_KEEP = 1024


class ConsensusTopic:
    """Validator and delivery for consensus messages; ``feed`` hands a decoded message to the driver (it
    ignores messages while no driver runs)."""

    def __init__(self, chain: Chain, feed: Callable[[ConsensusMsg], None]) -> None:
        self.chain = chain
        self.feed = feed
        self._decoded: dict[int, tuple[bytes, ConsensusMsg]] = {}

    def validate(self, peer: PeerId, data: bytes) -> ValidationResult:
        """ACCEPT a well-formed proposal, vote or round state signed by a validator of this chain; REJECT anything
        else (a round state is signed, so a stranger cannot make validators relay votes for it)."""
        try:
            msg = decode_consensus(data)
        except WireError:
            return ValidationResult.REJECT
        cid = self.chain.chain_id
        if isinstance(msg, ProposalMsg):
            p = msg.proposal
            ok = p.proposer in self.chain.validators and p.verify(cid) and msg.block.hash() == p.block_hash
        elif isinstance(msg, RoundStateMsg):
            ok = msg.state.validator in self.chain.validators and msg.state.verify(cid)
        else:
            ok = msg.vote.validator in self.chain.validators and msg.vote.verify(cid)
        if not ok:
            return ValidationResult.REJECT
        # Gossip delivers this same bytes object next: keep the decoded message (a proposal carries a whole
        # block) so deliver does not decode it again. Keyed by identity, holding the bytes, so a reused id
        # cannot match other data; bounded, oldest out, for messages accepted but never delivered.
        self._decoded[id(data)] = (data, msg)
        while len(self._decoded) > CONSENSUS_DECODED_KEEP:
            del self._decoded[next(iter(self._decoded))]
        return ValidationResult.ACCEPT

    def deliver(self, msg: Received) -> None:
        """Hand an accepted message to the driver, reusing the validator's decoding when it is the same bytes."""
        kept = self._decoded.pop(id(msg.data), None)
        try:
            decoded = kept[1] if kept is not None and kept[0] is msg.data else decode_consensus(msg.data)
            self.feed(decoded)
        except WireError:  # the validator accepted it, so this cannot happen; never crash on it either
            log.warning("undecodable consensus message from %s", msg.source.short())
