"""The Temporal Schedule of an entity workflow (BeadStore, Witness), from inside that workflow.

The Schedule has the entity's id; its runs start the `tick` workflow, named
`<kind>-tick/<namespace>/<name>-<time>`, with the entity's id as argument.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts.schedules import ScheduleActivities, ScheduleRequest

SHORT = timedelta(minutes=2)


async def keep_schedule(tick: str, every: timedelta, note: str, first: bool) -> None:
    """Make the entity's Schedule, or retime it (a pause set in the UI stays); `first`: the entity
    has had none, so it runs at once, even when it takes over one left by an earlier run."""
    entity = workflow.info().workflow_id
    kind = entity.split("/", 1)[0]
    await workflow.execute_activity_method(
        ScheduleActivities.ensure,
        ScheduleRequest(
            schedule_id=entity,
            every=every,
            workflow=tick,
            run_id=entity.replace(f"{kind}/", f"{kind}-tick/", 1),
            arg=entity,
            task_queue=workflow.info().task_queue,
            note=note,
            first=first,
        ),
        start_to_close_timeout=SHORT,
        retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
    )


async def drop_schedule() -> None:
    """Delete the entity's Schedule (gone already is done)."""
    await workflow.execute_activity_method(
        ScheduleActivities.delete,
        workflow.info().workflow_id,
        start_to_close_timeout=SHORT,
        retry_policy=RetryPolicy(maximum_attempts=10),
    )
