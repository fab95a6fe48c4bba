"""The Convoy workflow: a batch of beads worked in parallel, `convoy/<namespace>/<name>`.

It watches the polecats of its beads (one heartbeating activity that returns
when they change) and, with autoSpawn, creates a Polecat for every tracked
bead that has none, never letting more than `parallelism` be in progress at
once. The count of in-progress beads is the workflow's own durable state
(spawned polecats count until they are seen to finish), so no restart of a
worker, and no lag of visibility, can let it spawn past the cap.

Each tracked bead is:
- completed: its polecat Succeeded, or the BeadStore shows the bead closed;
- failed: its polecat Failed or was Terminated (or could not be created);
- in progress: its polecat is Pending, Idle or Working (or was just created);
- pending: it has no polecat yet.

Phase: Pending while no bead has started; Active once one has, until every
bead is final; then Completed if all completed, Failed if any failed. A
bead added later, or a failed polecat deleted (so the bead is spawned
again), makes the convoy Active again.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from contracts import attributes, heartbeats
    from contracts.convoys import (
        WATCH_POLL,
        ConvoyActivities,
        ConvoySnapshot,
        PolecatSeen,
        RemoveRequest,
        SpawnRequest,
        WatchRequest,
        holder_prefix,
    )
    from contracts.status import EventNote, StatusTarget
    from crds.convoy import Convoy, ConvoyPhase, ConvoyPolecatRef, ConvoyStatus
    from crds.polecat import LIVE_PHASES
    from crds.rig import Rig
    from crds.usage import Usage
    from workflows.entity import Entity, EntityState
    from workflows.failures import message_of
    from workflows.history import HISTORY_LIMIT, history_full
    from workflows.polecat import PolecatWorkflow
    from workflows.polecat_models import Remedy
    from workflows.rig import RigWorkflow

SHORT = timedelta(minutes=2)
IDLE_POLL = 10.0  # seconds between looks once every bead is final
# Which of several polecats of one bead speaks for it.
RANK = {"Succeeded": 0, "Working": 1, "Idle": 1, "Pending": 1, "Failed": 2, "Terminated": 2}


class Spawned(BaseModel):
    name: str
    seen: bool = False  # visible to the watch at least once (so its absence means deleted)


class ConvoyState(EntityState):
    """All that continue-as-new carries."""

    status: ConvoyStatus = Field(default_factory=ConvoyStatus)
    spawned: dict[str, Spawned] = Field(default_factory=dict)  # bead -> the polecat we created
    refused: dict[str, str] = Field(default_factory=dict)  # bead -> why its polecat could not be created
    snapshot: ConvoySnapshot | None = None
    # polecat -> the budget order sent to it ("fail:<attempt>" or "restart:<attempt>"): each sent once.
    budget_orders: dict[str, str] = Field(default_factory=dict)


class ConvoyInput(BaseModel):
    convoy: Convoy
    rig: Rig | None
    state: ConvoyState | None = None
    history_limit: int = HISTORY_LIMIT
    status_target: StatusTarget | None = None


@workflow.defn(name="Convoy")
class ConvoyWorkflow(Entity[Convoy, ConvoyState]):
    RESOURCE_FIELD = "convoy"

    @workflow.init
    def __init__(self, input: ConvoyInput) -> None:
        super().__init__(input, ConvoyState())
        self.rig = input.rig
        self.kubernetes = input.status_target is not None
        self.spec_changed = False

    @property
    def convoy(self) -> Convoy:
        return self.resource

    def applied(self, before: Convoy, outcome: str) -> str:
        self.spec_changed = self.spec_changed or outcome == "configured"
        return outcome

    # --- the loop ---------------------------------------------------------------

    @workflow.run
    async def run(self, input: ConvoyInput) -> ConvoyStatus:
        self.begin(publish=input.state is None)
        while True:
            if self.deleted:
                await self._remove_spawned()
                return self.state.status
            self._update_status()
            await self._hold_to_budget()
            if await self._spawn():
                continue
            if history_full(input.history_limit):
                await self.roll_over(input)
            await self._watch()

    async def _watch(self) -> None:
        """Wait for the beads' polecats to change (or for a new spec, or deletion)."""
        spec = self.convoy.spec
        snapshot = self.state.snapshot
        final = self.state.status.phase in ("Completed", "Failed")
        watcher = workflow.start_activity_method(
            ConvoyActivities.watch,
            WatchRequest(
                namespace=self.convoy.namespace,
                rig=spec.rig_ref,
                checkout=self.rig.spec.local_path if self.rig else None,
                beads=spec.tracked_beads,
                seen=snapshot.digest() if snapshot else None,
                poll=IDLE_POLL if final else WATCH_POLL,
                budget=spec.budget,
            ),
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=heartbeats.TIMEOUT,
            retry_policy=heartbeats.watch_retry(),
            cancellation_type=workflow.ActivityCancellationType.TRY_CANCEL,
        )
        self.spec_changed = False
        await workflow.wait_condition(lambda: watcher.done() or self.deleted or self.spec_changed)
        if not watcher.done():
            watcher.cancel()
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await watcher
            return
        self.state.snapshot = watcher.result()

    async def _spawn(self) -> bool:
        """Create polecats for pending beads, up to the cap; True if any were created."""
        spec = self.convoy.spec
        if not spec.auto_spawn or self.state.snapshot is None:  # first learn what exists and is closed
            return False
        if self._budget_spent():
            return False
        room = (spec.parallelism or len(spec.tracked_beads)) - self.state.status.in_progress
        pending = [bead for bead, (_, _, outcome) in self._outcomes().items() if outcome == "pending"]
        beads = pending[: max(room, 0)]
        if not beads:
            return False

        async def one(bead: str) -> None:
            try:
                name = await workflow.execute_activity_method(
                    ConvoyActivities.spawn,
                    SpawnRequest(convoy=self.convoy, bead_id=bead, kubernetes=self.kubernetes),
                    start_to_close_timeout=SHORT,
                    heartbeat_timeout=heartbeats.TIMEOUT,
                    retry_policy=RetryPolicy(maximum_attempts=5),
                )
            except ActivityError as error:
                self.state.refused[bead] = message_of(error)
                return
            self.state.spawned[bead] = Spawned(name=name)

        # The room was measured before any of these exists, so the cap holds while they are created.
        await asyncio.gather(*(one(bead) for bead in beads))
        return True

    def _budget_spent(self) -> str | None:
        snapshot = self.state.snapshot
        return snapshot.budget_spent if snapshot and self.convoy.spec.budget else None

    async def _hold_to_budget(self) -> None:
        """Once its budget is spent, its working polecats are stopped (Failed, ConvoyBudgetExceeded);
        once a raised budget leaves room, those it stopped continue, each in a new attempt."""
        spent = self._budget_spent()
        mine = {spawned.name for spawned in self.state.spawned.values()}
        orders = []
        for polecat in (self.state.snapshot or ConvoySnapshot()).polecats:
            if polecat.name not in mine:
                continue
            if spent and polecat.phase == "Working":
                action = "fail"
                message = f"stopped by Convoy {self.convoy.namespace}/{self.convoy.name}: its budget is spent ({spent})"
            elif not spent and polecat.phase == "Failed" and polecat.reason == "ConvoyBudgetExceeded":
                action = "restart"
                message = f"continued: the budget of Convoy {self.convoy.namespace}/{self.convoy.name} has room again"
            else:
                continue
            order = f"{action}:{polecat.restarts}"
            if self.state.budget_orders.get(polecat.name) == order:
                continue
            self.state.budget_orders[polecat.name] = order
            reason = "ConvoyBudgetExceeded" if action == "fail" else "BudgetRaised"
            remedy = Remedy(
                uid=polecat.uid, attempt=polecat.restarts, action=action, reason=reason, message=message
            )
            handle = workflow.get_external_workflow_handle_for(
                PolecatWorkflow.run, attributes.workflow_id("Polecat", self.convoy.namespace, polecat.name)
            )
            orders.append(handle.signal(PolecatWorkflow.remedy, remedy))
        for sent in await asyncio.gather(*orders, return_exceptions=True):
            if isinstance(sent, BaseException) and not isinstance(sent, FailureError):
                raise sent  # a polecat gone since has nothing to stop

    async def _remove_spawned(self) -> None:
        """Delete the polecats it spawned, then give their names back to the rig."""
        names = [spawned.name for spawned in self.state.spawned.values()]
        if names:
            await workflow.execute_activity_method(
                ConvoyActivities.remove,
                RemoveRequest(namespace=self.convoy.namespace, names=names, kubernetes=self.kubernetes),
                start_to_close_timeout=SHORT,
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=10),
            )
        if self.convoy.spec.rig_ref:
            rig = workflow.get_external_workflow_handle_for(
                RigWorkflow.run, attributes.workflow_id("Rig", None, self.convoy.spec.rig_ref)
            )
            with contextlib.suppress(FailureError):  # the rig is gone: nothing to give back
                await rig.signal(RigWorkflow.release_names, holder_prefix(self.convoy))

    # --- status -------------------------------------------------------------------

    def _outcomes(self) -> dict[str, tuple[str | None, str | None, str]]:
        """Each tracked bead's polecat (name, phase) and whether it is completed, failed, in progress
        or pending; one pass over the snapshot, however many beads and polecats there are."""
        snapshot = self.state.snapshot or ConvoySnapshot()
        closed = set(snapshot.closed)
        by_bead: dict[str, list[PolecatSeen]] = {}
        for polecat in snapshot.polecats:
            by_bead.setdefault(polecat.bead_id, []).append(polecat)
        return {
            bead: self._outcome(bead, by_bead.get(bead, []), closed)
            for bead in self.convoy.spec.tracked_beads
        }

    def _outcome(
        self, bead: str, candidates: list[PolecatSeen], closed: set[str]
    ) -> tuple[str | None, str | None, str]:
        mine = self.state.spawned.get(bead)
        chosen: PolecatSeen | None = None
        if mine is not None:
            chosen = next((polecat for polecat in candidates if polecat.name == mine.name), None)
        if chosen is None and candidates:
            chosen = min(candidates, key=lambda polecat: RANK.get(polecat.phase, 1))
        name, phase = (chosen.name, chosen.phase) if chosen else (mine.name if mine else None, None)
        if bead in closed or phase == "Succeeded":
            return name, phase, "completed"
        if phase in ("Failed", "Terminated") or (chosen is None and bead in self.state.refused):
            return name, phase, "failed"
        if phase in LIVE_PHASES or (mine is not None and chosen is None):
            return name, phase or "Pending", "inProgress"
        return None, None, "pending"

    def _update_status(self) -> None:
        snapshot = self.state.snapshot or ConvoySnapshot()
        names = {polecat.name for polecat in snapshot.polecats}
        for bead, mine in list(self.state.spawned.items()):
            if mine.name in names:
                mine.seen = True
            elif mine.seen:  # it was there and is gone: deleted, so the bead may be spawned again
                del self.state.spawned[bead]
        tracked = set(self.convoy.spec.tracked_beads)
        for bead in list(self.state.refused):
            if bead not in tracked:
                del self.state.refused[bead]

        status = self.state.status
        before = status.to_wire()
        counts = {"completed": 0, "failed": 0, "inProgress": 0, "pending": 0}
        polecats = []
        for bead, (name, phase, outcome) in self._outcomes().items():
            counts[outcome] += 1
            if name is not None:
                polecats.append(ConvoyPolecatRef(name=name, bead_id=bead, phase=phase or "Pending"))
        status.total = len(self.convoy.spec.tracked_beads)
        status.completed, status.failed = counts["completed"], counts["failed"]
        status.in_progress, status.pending = counts["inProgress"], counts["pending"]
        status.polecats = polecats
        spent = [polecat.usage for polecat in snapshot.polecats if polecat.usage is not None]
        status.usage = Usage.total(spent) if spent else None
        phase = self._phase()
        now = workflow.now()
        if phase != "Pending" and status.start_time is None:
            status.start_time = now
        if phase in ("Completed", "Failed"):
            status.completion_time = status.completion_time or now
        else:
            status.completion_time = None
        status.message = self._message()
        if phase != status.phase:
            kind = "Warning" if phase == "Failed" else "Normal"
            reason = "BudgetExceeded" if phase == "Failed" and self._budget_spent() else phase
            self.set_phase(phase, EventNote(reason=reason, message=status.message, type=kind))
        elif status.to_wire() != before:
            self.publish()

    def _phase(self) -> ConvoyPhase:
        status = self.state.status
        if status.total and status.completed == status.total:
            return "Completed"
        if self._budget_spent():
            return "Failed"
        if status.total and status.completed + status.failed == status.total:
            return "Failed"
        if status.completed or status.failed or status.in_progress:
            return "Active"
        return "Pending"

    def _message(self) -> str:
        status = self.state.status
        parts = [f"{status.completed}/{status.total} completed"]
        spent = self._budget_spent()
        if spent:
            parts.insert(0, f"budget spent: {spent}; no more polecats are spawned, working ones were stopped")
        if status.failed:
            parts.append(f"{status.failed} failed")
        if status.in_progress:
            parts.append(f"{status.in_progress} in progress")
        if self.state.refused:
            bead, why = next(iter(self.state.refused.items()))
            parts.append(f"no polecat for {bead}: {why}")
        if self.state.snapshot and self.state.snapshot.bead_error:
            parts.append(f"beads unreadable: {self.state.snapshot.bead_error}")
        return "; ".join(parts)
