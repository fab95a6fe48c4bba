"""Watchers: activities that look again and again, heartbeating, until what they see has changed.

A watcher returns the moment its look differs from what the workflow has, so
the workflow's history grows only with changes; and it returns anyway after
`limit`, so the workflow can roll its history over even when nothing changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")


async def poll_until_changed(
    look: Callable[[], Awaitable[T]], changed: Callable[[T], bool], *, poll: float, limit: timedelta
) -> T:
    """The first look that `changed`, or the latest once `limit` has passed; `poll` seconds apart."""
    deadline = time.monotonic() + limit.total_seconds()
    while True:
        seen = await look()
        if changed(seen) or time.monotonic() >= deadline:
            return seen
        activity.heartbeat()
        await asyncio.sleep(poll)
