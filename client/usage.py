"""What working polecats have spent so far, read live without a history event per update.

A polecat's memo has its usage as of its latest transition. While its agent
runs, the activity that watches it carries the running total in each
heartbeat (every few seconds); a heartbeat is not a history event, and a
workflow's description shows the pending activity's latest details. So the
live figure is one describe per working polecat, made only by the commands
that show usage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from client.reads import Reads
from contracts import names
from crds.polecat import Polecat
from crds.usage import Usage

WATCHERS = {names.WATCH_AGENT, names.WATCH_POD}  # the activities whose heartbeats carry an agent's usage
# Describes in flight at once: a town of hundreds of working polecats stays a short burst.
CONCURRENT_DESCRIBES = 32


async def live_usage(reads: Reads, workflow_id: str) -> Usage | None:
    """A running polecat's usage from its watcher's latest heartbeat; None if it has none."""
    details = await reads.heartbeat(workflow_id, WATCHERS)
    return Usage.model_validate(details) if isinstance(details, dict) else None


async def live_usages(reads: Reads, polecats: Iterable[tuple[str, str]]) -> list[Usage | None]:
    """`live_usage` of each (namespace, name), in order; at most CONCURRENT_DESCRIBES at once."""
    limit = asyncio.Semaphore(CONCURRENT_DESCRIBES)

    async def one(namespace: str, name: str) -> Usage | None:
        async with limit:
            return await live_usage(reads, names.workflow_id("Polecat", namespace, name))

    return await asyncio.gather(*(one(namespace, name) for namespace, name in polecats))


async def with_live_usage(reads: Reads, polecats: Iterable[Polecat]) -> None:
    """Each working polecat's `status.usage` brought up to its agent's latest heartbeat."""
    working = [polecat for polecat in polecats if polecat.status and polecat.status.phase == "Working"]
    live = await live_usages(reads, [(polecat.namespace, polecat.name) for polecat in working])
    for polecat, usage in zip(working, live, strict=True):
        if usage is not None and polecat.status is not None:
            polecat.status.usage = usage
