"""Counting polecats through Temporal's visibility: one query, however many polecats there are."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client

from workflows import attributes

LIVE_PHASES = ("Pending", "Idle", "Working")  # what a rig's polecatCount counts


class CountWatch(BaseModel):
    rig: str
    seen: int  # the count the rig shows
    poll: float = 1.0
    limit: timedelta = timedelta(minutes=5)  # return anyway, so the workflow can roll its history


class VisibilityActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="visibility.watch_polecat_count")
    async def watch_polecat_count(self, watch: CountWatch) -> int:
        """The rig's live polecats, as soon as their number differs from `seen`."""
        phases = ", ".join(f"'{phase}'" for phase in LIVE_PHASES)
        query = (
            f"{attributes.KIND.name} = 'Polecat' AND {attributes.RIG.name} = '{watch.rig}'"
            f" AND {attributes.PHASE.name} IN ({phases}) AND ExecutionStatus = 'Running'"
        )
        deadline = time.monotonic() + watch.limit.total_seconds()
        while True:
            count = (await self.client.count_workflows(query)).count
            if count != watch.seen or time.monotonic() >= deadline:
                return count
            activity.heartbeat()
            await asyncio.sleep(watch.poll)
