"""The application: everything that makes a running dacn node out of the three libraries.

It is a few rooms, each a subpackage with one job (``docs/ARCHITECTURE.md`` has the table): ``home`` (a node's
files: config, genesis, keys), ``node`` (the wiring and lifecycle), ``gossip`` (topics, wire formats, validators),
``txs`` (submission and the commit index), ``consensus`` (the driver and the double-sign guard), ``sync`` (block
sync), ``jobs`` (job submission, datasets, blobs), ``views`` (the read models), ``agent`` (the worker agent and the
compute pool), ``api`` (the REST API by resource), ``dashboard`` and ``cli`` (the ``dacn`` command, devnet, demo,
load generator). A room imports another only through its package; ``errors`` is the one root they share.
"""
