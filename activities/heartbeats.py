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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from temporalio import activity

from contracts.heartbeats import EVERY

P = ParamSpec("P")
R = TypeVar("R")


def heartbeating(body: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
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
