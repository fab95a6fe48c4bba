"""Temporal Schedules: the timers of BeadStore (sync) and Witness (check), visible and pausable in the UI.

Each is created from its entity workflow, and follows its spec: created if
missing (running once at once), changed when the spec's interval (or the
worker's task queue) changes, deleted with the resource. A person's pause in the UI is left alone.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts import schedules as contract
from contracts.schedules import ScheduleRequest


def _spec(every: timedelta) -> ScheduleSpec:
    return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)])


class ScheduleActivities(contract.ScheduleActivities):
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name=contract.ENSURE)
    async def ensure(self, request: ScheduleRequest) -> None:
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                request.workflow,
                request.arg,
                id=request.run_id,
                task_queue=request.task_queue,
                execution_timeout=max(request.every, timedelta(minutes=1)),
            ),
            spec=_spec(request.every),
            # A run still going when the next is due: skip the next (never two at once).
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        )
        schedule.state.note = request.note
        try:
            await self.client.create_schedule(request.schedule_id, schedule, trigger_immediately=True)
            return
        except ScheduleAlreadyRunningError:
            pass

        def follow_spec(current: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = current.description.schedule.state  # a pause set in the UI stays
            return ScheduleUpdate(schedule=schedule)

        handle = self.client.get_schedule_handle(request.schedule_id)
        await handle.update(follow_spec)
        if request.first:
            # Runs still waiting on the earlier entity will never be answered, and the overlap
            # policy would skip every new one until they time out: end them, then run at once.
            for run in (await handle.describe()).info.running_actions:
                if not isinstance(run, ScheduleActionExecutionStartWorkflow):
                    continue
                with contextlib.suppress(RPCError):  # ended since
                    await self.client.get_workflow_handle(
                        run.workflow_id, run_id=run.first_execution_run_id
                    ).terminate("its entity's workflow ended; a new one took the Schedule over")
            await handle.trigger()

    @activity.defn(name=contract.DELETE)
    async def delete(self, schedule_id: str) -> None:
        try:
            await self.client.get_schedule_handle(schedule_id).delete()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
