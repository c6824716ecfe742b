"""Helpers for p2pnet tests: start N hosts on loopback and tear them down."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from p2pnet import Host, HostConfig, Identity


@asynccontextmanager
async def running_hosts(
    n: int, configure: Callable[[int, HostConfig], None] | None = None
) -> AsyncIterator[list[Host]]:
    """``n`` TCP hosts on 127.0.0.1 (test preset, no discovery targets unless ``configure`` sets them)."""
    hosts = []
    async with trio.open_nursery() as nursery:
        for i in range(n):
            cfg = HostConfig.test(target_peers=0)
            if configure is not None:
                configure(i, cfg)
            host = Host(Identity.generate(), cfg)
            await nursery.start(host.run)
            hosts.append(host)
        yield hosts
        nursery.cancel_scope.cancel()
