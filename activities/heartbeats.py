"""Heartbeats for activities that wait on a single long call.

An activity whose worker dies is retried when its heartbeat stops (seconds),
not when its start-to-close timeout runs out (minutes). `heartbeating` keeps
beating while the activity body awaits, so such activities can be given a
short heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.common import RetryPolicy

EVERY = 2.0  # seconds between beats
# The heartbeat timeout workflows give these activities: retried this soon after a worker dies.
TIMEOUT = timedelta(seconds=10)
# Watchers (activities that poll, for minutes, until something changes) retry at least this often.
# Each worker crash fails the attempt in flight, and Temporal's default backoff (doubling up to
# 100 s) left a watcher idle for over a minute after a few crashes (seen by tests/faults/).
WATCH_RETRY_INTERVAL = timedelta(seconds=5)


def watch_retry(*non_retryable: str) -> RetryPolicy:
    """The retry policy of a watcher: no attempt limit, never more than WATCH_RETRY_INTERVAL apart."""
    return RetryPolicy(maximum_interval=WATCH_RETRY_INTERVAL, non_retryable_error_types=list(non_retryable))


P = ParamSpec("P")
R = TypeVar("R")


def heartbeating(body: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(body)
    async def beating(*args: P.args, **kwargs: P.kwargs) -> R:
        async def beat() -> None:
            while True:
                activity.heartbeat()
                await asyncio.sleep(EVERY)

        beater = asyncio.create_task(beat())
        try:
            return await body(*args, **kwargs)
        finally:
            beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beater

    return beating
