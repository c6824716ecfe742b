"""The node's gossip topics and request protocols: their wire formats (``wire``) and the validators that decide
what is forwarded (tx and tx-batch admission, consensus messages, job-data announcements).

A validator checks untrusted bytes into typed objects and answers ACCEPT, IGNORE or REJECT (which blames the
relaying peer); what it accepted is handed on to whoever the node wired in (the mempool, the consensus driver,
the jobs room), so this room holds no node state of its own.
"""

from bootstrap.gossip.consensus import CONSENSUS_DECODED_KEEP, ConsensusTopic
from bootstrap.gossip.jobdata import JobDataTopic
from bootstrap.gossip.txs import TxTopics
from bootstrap.gossip.wire import (
    MAX_ANNOUNCE_BYTES,
    MAX_CONSENSUS_BYTES,
    MAX_TX_BATCH,
    MAX_TX_BATCH_BYTES,
    PROTO_STATUS,
    PROTO_SYNC,
    TOPIC_CONSENSUS,
    TOPIC_JOBDATA,
    TOPIC_TX,
    TOPIC_TXS,
    ConsensusMsg,
    JobDataAnnouncement,
    ProposalMsg,
    RoundStateMsg,
    Status,
    VoteMsg,
    decode_announcement,
    decode_consensus,
    decode_tx_batch,
    encode_announcement,
    encode_consensus,
    encode_tx_batch,
    split_tx_batches,
)

__all__ = [
    "CONSENSUS_DECODED_KEEP",
    "MAX_ANNOUNCE_BYTES",
    "MAX_CONSENSUS_BYTES",
    "MAX_TX_BATCH",
    "MAX_TX_BATCH_BYTES",
    "PROTO_STATUS",
    "PROTO_SYNC",
    "TOPIC_CONSENSUS",
    "TOPIC_JOBDATA",
    "TOPIC_TX",
    "TOPIC_TXS",
    "ConsensusMsg",
    "ConsensusTopic",
    "JobDataAnnouncement",
    "JobDataTopic",
    "ProposalMsg",
    "RoundStateMsg",
    "Status",
    "TxTopics",
    "VoteMsg",
    "decode_announcement",
    "decode_consensus",
    "decode_tx_batch",
    "encode_announcement",
    "encode_consensus",
    "encode_tx_batch",
    "split_tx_batches"
]
