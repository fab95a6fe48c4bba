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
    from workflows.entity import Entity, EntityState
    from workflows.history import HISTORY_LIMIT, history_full
    from workflows.hosts import no_worker, not_taken, on_host
    from workflows.rig import RigWorkflow, release_rig
    from workflows.schedule import drop_schedule, keep_schedule

SHORT = timedelta(minutes=2)
MAX_ERRORS = 10
TICK = "BeadStoreTick"
T = TypeVar("T")


class BeadStoreState(EntityState):
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
class BeadStoreWorkflow(Entity[BeadStore, BeadStoreState]):
    RESOURCE_FIELD = "store"
    SPEC_MEMO_ALWAYS_BEFORE, PHASE_ATTRIBUTE_BEFORE = True, "set"

    @workflow.init
    def __init__(self, input: BeadStoreInput) -> None:
        super().__init__(input, BeadStoreState())
        self.rig = input.rig
        self.due = False

    @property
    def store(self) -> BeadStore:
        return self.resource

    @workflow.signal
    def sync_due(self) -> None:
        self.due = True

    @workflow.run
    async def run(self, input: BeadStoreInput) -> None:
        self.begin(publish=input.state is None)
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
                await self.roll_over(input)

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
        self._sync_phase("Syncing", None)
        try:
            report: SyncReport = await workflow.execute_activity_method(
                BeadActivities.sync,
                SyncRequest(source=spec.source, filters=spec.filters, checkout=self.rig.spec.local_path),
                start_to_close_timeout=SHORT,
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
                **on_host(self.rig.host),  # the beads are files beside the rig's checkout
            )
        except ActivityError as error:
            lost = no_worker(self.rig.host, "the sync") if not_taken(error) else None
            report = SyncReport(error=lost or str(error.cause or error))
        self.state.status.last_sync = workflow.now()
        if report.error is None:
            self.state.status.issue_count = report.issue_count
            self._sync_phase("Synced", report)
            await self._tell_rig(RigWorkflow.beads_synced, self.state.status.last_sync)
        else:
            self._sync_phase("Error", report)

    async def _tell_rig(self, signal: Callable[[RigWorkflow, T], None], arg: T) -> None:
        rig = workflow.get_external_workflow_handle_for(
            RigWorkflow.run, attributes.workflow_id("Rig", None, self.rig.name)
        )
        try:
            await rig.signal(signal, arg)
        except FailureError:
            workflow.logger.info("rig %s is gone; not told", self.rig.name)

    def _sync_phase(self, phase: BeadStorePhase, report: SyncReport | None) -> None:
        status = self.state.status
        changed = phase != status.phase
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
        self.set_phase(phase, event)


def _errors(previous: list[SyncError], problems: list[str], now: datetime) -> list[SyncError]:
    """The latest sync's problems, each stamped with when it was first seen (stable across syncs)."""
    since = {error.message: error.timestamp for error in previous}
    return [
        SyncError(message=problem, timestamp=since.get(problem, now)) for problem in problems[:MAX_ERRORS]
    ]
