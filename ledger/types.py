"""Domain aliases used across the ledger, so signatures say what an integer or a byte string means."""

Tokens = int
"""An amount of the native token, in its smallest unit (never a float)."""

Height = int
"""A block height; genesis is height 0."""

Reputation = int
"""A worker's reputation, an integer in ``0..1000``."""

AccountId = bytes
"""An account: the raw 32-byte Ed25519 public key (a node's identity is also its account)."""

JobId = bytes
"""A job: the 32-byte id of the ``submit_job`` transaction that created it."""

Offence = tuple[bytes, int, int, int]
"""An equivocation, punished once: the validator, and the height, round and step it signed twice at."""

REPUTATION_MAX: Reputation = 1000
ACCOUNT_ID_LEN = 32
DIGEST_LEN = 32
