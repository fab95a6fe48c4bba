"""Reading what Temporal knows of our workflows: a running workflow's own record, and counts.

A description comes from the workflow's own record, so it is never behind; a
count comes from visibility, one query however many workflows it covers.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from crds.polecat import LIVE_PHASES
from workflows import attributes


async def describe_running(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The workflow's description if it is running; None if it ended or never was."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description if description.status == WorkflowExecutionStatus.RUNNING else None


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
