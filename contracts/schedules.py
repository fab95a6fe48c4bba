"""The Schedule activities, as workflows call them (`activities.schedules` does the work).

A contract class declares each activity: its name, its message types and
its result. The implementation subclasses it, so mypy holds the two to the
same signatures, and a workflow names the activity by the contract's method,
never by a string.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity

ENSURE = "schedules.ensure"
DELETE = "schedules.delete"


class ScheduleRequest(BaseModel):
    schedule_id: str
    every: timedelta
    workflow: str  # the workflow type each run starts
    run_id: str  # its workflow id (the server appends the time)
    arg: str  # its one argument
    task_queue: str
    note: str  # shown in the UI
    # The entity's first: a Schedule an earlier run of the name left (its workflow terminated in the
    # UI) is taken over and runs at once, as a new one would.
    first: bool = False


class ScheduleActivities:
    @activity.defn(name=ENSURE)
    async def ensure(self, request: ScheduleRequest) -> None:
        """Create the Schedule (running once at once) or retime it; a pause set in the UI stays."""
        raise NotImplementedError

    @activity.defn(name=DELETE)
    async def delete(self, schedule_id: str) -> None:
        """Delete the Schedule; gone already is done."""
        raise NotImplementedError
