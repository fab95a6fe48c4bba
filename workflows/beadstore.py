"""The BeadStore: where a rig's beads come from, `beadstore/<namespace>/<name>`.

Two parts, so the timer is one people can see and pause in the Temporal UI:

- `BeadStoreWorkflow`, the entity: holds the spec and the status, owns the
  Schedule (created, retimed, deleted with the resource) and runs each sync;
- a Schedule with the same id, every syncInterval, whose runs
  (`BeadStoreTick`) only tell the entity a sync is due. Syncs are one at a
  time; a tick that arrives during a sync makes one more afterwards.

Phase: Syncing while a sync runs, Synced after one that read the source
(bad records are counted in `errors`, never fatal), Error when the source
cannot be read (it recovers on the next sync that can).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from contracts import attributes, heartbeats
    from contracts.beads import BeadActivities, SyncReport, SyncRequest
    from contracts.status import EventNote, StatusTarget
    from crds.beadstore import BeadStore, BeadStorePhase, BeadStoreStatus, SyncError
    from crds.common import parse_duration
    from crds.rig import Rig
    from workflows.history import HISTORY_LIMIT, history_full
    from workflows.publisher import StatusPublisher, apply_outcome, refuse_rig_change
    from workflows.rig import RigWorkflow, release_rig
    from workflows.schedule import drop_schedule, keep_schedule

SHORT = timedelta(minutes=2)
MAX_ERRORS = 10
TICK = "BeadStoreTick"
T = TypeVar("T")


class BeadStoreState(BaseModel):
    status: BeadStoreStatus = Field(default_factory=BeadStoreStatus)
    scheduled_every: timedelta | None = None  # the interval the Schedule has
    synced_spec: dict[str, object] | None = None  # the spec (source, filters) of the last sync


class BeadStoreInput(BaseModel):
    store: BeadStore
    rig: Rig
    state: BeadStoreState | None = None
    history_limit: int = HISTORY_LIMIT
    status_target: StatusTarget | None = None


@workflow.defn(name=TICK)
class BeadStoreTickWorkflow:
    """One run of a BeadStore's Schedule: tell the store a sync is due."""

    @workflow.run
    async def run(self, store_id: str) -> None:
        await workflow.get_external_workflow_handle(store_id).signal(BeadStoreWorkflow.sync_due)


@workflow.defn(name="BeadStore")
class BeadStoreWorkflow:
    @workflow.init
    def __init__(self, input: BeadStoreInput) -> None:
        self.store = input.store
        self.rig = input.rig
        self.state = input.state or BeadStoreState()
        self.fresh = input.state is None
        self.due = False
        self.deleted = False
        self.publisher = StatusPublisher(input.status_target)

    @workflow.update
    def apply(self, store: BeadStore) -> str:
        store.metadata.uid = self.store.metadata.uid
        outcome = apply_outcome(self.fresh, self.store.spec, store.spec)
        self.fresh = False
        self.store = store
        workflow.upsert_memo({attributes.MEMO_SPEC: store.spec.to_wire()})
        return outcome

    @apply.validator
    def _validate_apply(self, store: BeadStore) -> None:
        refuse_rig_change("BeadStore", self.store.spec.rig_ref, store.spec.rig_ref)

    @workflow.signal
    def sync_due(self) -> None:
        self.due = True

    @workflow.signal
    def delete(self) -> None:
        self.deleted = True

    @workflow.query
    def status(self) -> BeadStoreStatus:
        return self.state.status

    @workflow.run
    async def run(self, input: BeadStoreInput) -> None:
        self.publisher.start()
        if input.state is None:
            self._publish(None)
        while True:
            await workflow.wait_condition(
                lambda: self.deleted or self._retime() or self._resync() or history_full(input.history_limit)
            )
            if self.deleted:
                await drop_schedule()
                await release_rig("BeadStore", self.rig.name, f"{self.store.namespace}/{self.store.name}")
                return
            if self._retime():
                await self._schedule()
            elif self._resync():
                await self._sync()
            else:
                await self.publisher.roll_over(
                    input.model_copy(update={"store": self.store, "state": self.state})
                )

    def _every(self) -> timedelta:
        return parse_duration(self.store.spec.sync_interval)

    def _retime(self) -> bool:
        return self.state.scheduled_every != self._every()

    def _resync(self) -> bool:
        """A tick came, or the source or filters changed since the last sync."""
        return self.due or self.state.synced_spec != self._sync_spec()

    def _sync_spec(self) -> dict[str, object]:
        spec = self.store.spec
        return {"source": spec.source.to_wire(), "filters": spec.filters.to_wire() if spec.filters else None}

    async def _schedule(self) -> None:
        every = self._every()
        await keep_schedule(
            TICK,
            every,
            f"syncs BeadStore {self.store.ref} every {self.store.spec.sync_interval}",
            first=self.state.scheduled_every is None,
        )
        self.state.scheduled_every = every

    async def _sync(self) -> None:
        self.due = False
        spec = self.store.spec
        self.state.synced_spec = self._sync_spec()
        self._set_phase("Syncing", None)
        try:
            report: SyncReport = await workflow.execute_activity_method(
                BeadActivities.sync,
                SyncRequest(source=spec.source, filters=spec.filters, checkout=self.rig.spec.local_path),
                start_to_close_timeout=SHORT,
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as error:
            report = SyncReport(error=str(error.cause or error))
        self.state.status.last_sync = workflow.now()
        if report.error is None:
            self.state.status.issue_count = report.issue_count
            self._set_phase("Synced", report)
            await self._tell_rig(RigWorkflow.beads_synced, self.state.status.last_sync)
        else:
            self._set_phase("Error", report)

    async def _tell_rig(self, signal: Callable[[RigWorkflow, T], None], arg: T) -> None:
        rig = workflow.get_external_workflow_handle_for(
            RigWorkflow.run, attributes.workflow_id("Rig", None, self.rig.name)
        )
        try:
            await rig.signal(signal, arg)
        except FailureError:
            workflow.logger.info("rig %s is gone; not told", self.rig.name)

    def _set_phase(self, phase: BeadStorePhase, report: SyncReport | None) -> None:
        status = self.state.status
        changed = phase != status.phase
        status.phase = phase
        event = None
        if report is not None:
            problems = [report.error] if report.error else report.problems
            status.errors = _errors(status.errors, problems, workflow.now())
            if report.error:
                status.message = report.error
                event = EventNote(reason="SyncFailed", message=report.error, type="Warning")
            else:
                status.message = f"{report.issue_count} beads"
                if problems:
                    status.message += f"; {len(problems)} notes on the data (see errors)"
                if changed:
                    event = EventNote(reason="Synced", message=status.message)
        workflow.upsert_search_attributes([attributes.PHASE.value_set(phase)])
        self._publish(event)

    def _publish(self, event: EventNote | None) -> None:
        self.publisher.publish(self.state.status, self.store.metadata.generation, event)


def _errors(previous: list[SyncError], problems: list[str], now: datetime) -> list[SyncError]:
    """The latest sync's problems, each stamped with when it was first seen (stable across syncs)."""
    since = {error.message: error.timestamp for error in previous}
    return [
        SyncError(message=problem, timestamp=since.get(problem, now)) for problem in problems[:MAX_ERRORS]
    ]
