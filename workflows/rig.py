"""The Rig workflow: a project workspace that the other kinds read, `rig/<name>`.

It holds the spec as applied and says whether the workspace is usable (phase
Ready or NotReady, with the reason), re-checking it now and then so a rig
recovers when its remote comes back. It is also the rig's registry:

- the one place that hands out polecat names from the rig's pools (an update,
  handled one at a time, so two concurrent spawns never get the same name);
- the holder of the rig's one BeadStore, which reports each sync (lastSync),
  of its one Refinery and of its one Witness.

polecatCount comes from one visibility count, watched by a heartbeating
activity that returns when the number changes: no polecat pays for it.

It runs until the Rig is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import cast

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from contracts import attributes, heartbeats
    from contracts.git import RigCheck
    from contracts.rig import (
        ALLOCATE_NAME,
        CLAIM,
        HOLDER_MEMO,
        RELEASE,
        HolderKind,
        NameRequest,
        RigClaim,
        RigRelease,
    )
    from contracts.status import EventNote, StatusTarget
    from contracts.visibility import CountWatch, VisibilityActivities
    from crds.common import set_condition
    from crds.rig import Rig, RigSpec, RigStatus, serving_host
    from workflows.entity import Entity, EntityState
    from workflows.history import HISTORY_LIMIT, history_full
    from workflows.hosts import no_worker, not_taken, on_host
    from workflows.names import next_name

# How often a rig's workspace is checked again: soon while it is broken, so it
# recovers quickly; rarely while it works.
RECHECK_NOT_READY = timedelta(seconds=30)
RECHECK_READY = timedelta(minutes=10)
FOLLOWS_AND_RECHECKS = "rig-follows-polecat-count-and-rechecks"


# The state field that holds each kind the rig has one of.
HOLDER_FIELD: dict[HolderKind, str] = {
    "BeadStore": "bead_store",
    "Refinery": "refinery",
    "Witness": "witness",
}


class RigState(EntityState):
    """All that continue-as-new carries."""

    status: RigStatus = Field(default_factory=RigStatus)
    checked_spec: RigSpec | None = None
    names: dict[str, str] = Field(default_factory=dict)  # polecat name -> its holder
    bead_store: str | None = None  # `<namespace>/<name>` of the rig's one BeadStore
    refinery: str | None = None  # `<namespace>/<name>` of the rig's one Refinery
    witness: str | None = None  # `<namespace>/<name>` of the rig's one Witness


class RigInput(BaseModel):
    rig: Rig
    state: RigState | None = None
    history_limit: int = HISTORY_LIMIT
    status_target: StatusTarget | None = None
    recheck_not_ready: timedelta = RECHECK_NOT_READY
    recheck_ready: timedelta = RECHECK_READY


@workflow.defn(name="Rig")
class RigWorkflow(Entity[Rig, RigState]):
    RESOURCE_FIELD = "rig"
    SPEC_MEMO_ALWAYS_BEFORE, PHASE_ATTRIBUTE_BEFORE = True, "set"

    @workflow.init
    def __init__(self, input: RigInput) -> None:
        super().__init__(input, RigState())

    @property
    def rig(self) -> Rig:
        return self.resource

    # --- what people, the bridge and other workflows send ---------------------

    @workflow.update(name=ALLOCATE_NAME)
    def allocate_name(self, request: NameRequest) -> str:
        names = self.state.names
        for name, holder in list(names.items()):
            if holder == request.holder:
                if name not in request.taken:
                    return name
                del names[name]
        name = next_name(self.rig.spec.name_pools, {*names, *request.taken})
        names[name] = request.holder
        return name

    # Claims are updates, handled one at a time: of two at once for one rig, one wins.
    @workflow.update(name=CLAIM)
    def claim(self, claim: RigClaim) -> None:
        """`claim.holder` is the rig's one BeadStore, Refinery or Witness from now on."""
        assert claim.kind is not None  # the validator refuses a claim without one
        self._hold(claim.kind, claim.holder)

    @claim.validator
    def _one_of_each(self, claim: RigClaim) -> None:
        if claim.kind is None:
            raise ApplicationError("kind: required (BeadStore, Refinery or Witness)", non_retryable=True)
        held = getattr(self.state, HOLDER_FIELD[claim.kind])
        if held not in (None, claim.holder, claim.replaces):
            raise ApplicationError(
                f"Rig {self.rig.name!r} already has a {claim.kind} ({held}); a rig has one",
                type=f"{claim.kind}Taken",
                non_retryable=True,
            )

    def _hold(self, kind: HolderKind, holder: str | None) -> None:
        """The rig's one `kind` is `holder` (None: it has none), in its state and its memo."""
        setattr(self.state, HOLDER_FIELD[kind], holder)
        workflow.upsert_memo({HOLDER_MEMO[kind]: holder})

    @workflow.signal(name=RELEASE)
    def release(self, release: RigRelease) -> None:
        """The rig no longer has `release.holder` (if that is the one it has)."""
        if getattr(self.state, HOLDER_FIELD[release.kind]) == release.holder:
            self._hold(release.kind, None)

    # What earlier versions sent, one pair per kind: kept so that their histories replay (a rig
    # lives for days, and a new worker replays its current run), and so that a bridge of an earlier
    # version, during an upgrade, is still held to one of each.
    @workflow.update
    def claim_bead_store(self, claim: RigClaim) -> None:
        self._hold("BeadStore", claim.holder)

    @claim_bead_store.validator
    def _one_bead_store(self, claim: RigClaim) -> None:
        self._one_of_each(claim.model_copy(update={"kind": "BeadStore"}))

    @workflow.update
    def claim_refinery(self, claim: RigClaim) -> None:
        self._hold("Refinery", claim.holder)

    @claim_refinery.validator
    def _one_refinery(self, claim: RigClaim) -> None:
        self._one_of_each(claim.model_copy(update={"kind": "Refinery"}))

    @workflow.update
    def claim_witness(self, claim: RigClaim) -> None:
        self._hold("Witness", claim.holder)

    @claim_witness.validator
    def _one_witness(self, claim: RigClaim) -> None:
        self._one_of_each(claim.model_copy(update={"kind": "Witness"}))

    @workflow.signal
    def release_bead_store(self, holder: str) -> None:
        self.release(RigRelease(kind="BeadStore", holder=holder))

    @workflow.signal
    def release_refinery(self, holder: str) -> None:
        self.release(RigRelease(kind="Refinery", holder=holder))

    @workflow.signal
    def release_witness(self, holder: str) -> None:
        self.release(RigRelease(kind="Witness", holder=holder))

    @workflow.signal
    def release_names(self, holder_prefix: str) -> None:
        """Free the names of holders that are done (a deleted convoy frees its polecats' names)."""
        names = self.state.names
        for name in [name for name, holder in names.items() if holder.startswith(holder_prefix)]:
            del names[name]

    @workflow.signal
    def beads_synced(self, when: datetime) -> None:
        self.state.status.last_sync = when
        self.publish(None)

    @workflow.query
    def current(self) -> Rig:
        return self.rig.model_copy(update={"status": self.state.status})

    # --- the loop ---------------------------------------------------------------

    @workflow.run
    async def run(self, input: RigInput) -> None:
        self.begin(publish=False)
        # Rigs started before polecatCount and rechecks (commit 9a5bc38) run on as they were until
        # they continue as new; every run since has both (tests/data/histories replays one).
        self.follows = workflow.patched(FOLLOWS_AND_RECHECKS)
        counting = asyncio.create_task(self._follow_polecat_count()) if self.follows else None
        if counting is not None:  # cancelled at the end: its ActivityError is expected, not to be logged
            counting.add_done_callback(lambda task: task.cancelled() or task.exception())
        while True:
            recheck = input.recheck_ready if self.state.status.phase == "Ready" else input.recheck_not_ready
            first = self.state.checked_spec is None
            try:
                await workflow.wait_condition(
                    lambda: (
                        self.deleted
                        or self.state.checked_spec != self.rig.spec
                        or history_full(input.history_limit)
                    ),
                    timeout=None if first or not self.follows else recheck,
                )
                due = self.state.checked_spec != self.rig.spec
            except TimeoutError:
                due = True
            if (self.deleted or not due) and counting is not None:
                counting.cancel()
            if self.deleted:
                return
            if not due:  # only the history is full
                await self.roll_over(input)
            await self._check()

    async def _follow_polecat_count(self) -> None:
        """polecatCount, following the rig's live polecats (runs for the workflow's life)."""
        while True:
            count = await workflow.execute_activity_method(
                VisibilityActivities.watch_polecat_count,
                CountWatch(rig=self.rig.name, seen=self.state.status.polecat_count),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=heartbeats.watch_retry(),
                cancellation_type=workflow.ActivityCancellationType.TRY_CANCEL,
            )
            if count != self.state.status.polecat_count:
                self.state.status.polecat_count = count
                self.publish(None)

    async def _check(self) -> None:
        spec, status, checked = self.rig.spec, self.state.status, self.state.checked_spec
        if checked is not None and (checked.local_path, checked.host) != (spec.local_path, spec.host):
            status.host = None  # another checkout: the host that has it is found again
        # A checkout the rig has a host for is checked there; one it has none for, by any worker.
        host = serving_host(spec, status)
        try:
            answer = await workflow.execute_activity(
                "git.check_rig",
                spec,
                result_type=cast(type, RigCheck | str),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=3),
                **on_host(host),
            )
        except ActivityError as error:
            if not not_taken(error):
                raise
            answer = RigCheck(
                reason="HostLost",
                message=no_worker(host, f"the check of {spec.local_path}")
                + " (start `gastown worker` there, with GASTOWN_HOST set to that name)",
            )
        check = answer if isinstance(answer, RigCheck) else _from_problem(answer)
        self.state.checked_spec = spec
        found_host = check.host not in (None, status.host)
        status.host = check.host or status.host
        if self.follows and (check.ready, check.message) == (status.phase == "Ready", status.message):
            if found_host:
                self.publish(None)
            return  # a recheck that found nothing new
        status.message = check.message
        status.conditions = set_condition(
            status.conditions,
            "Ready",
            "True" if check.ready else "False",
            check.reason,
            check.message,
            workflow.now(),
        )
        self.set_phase(
            "Ready" if check.ready else "NotReady",
            EventNote(
                reason=check.reason, message=check.message, type="Normal" if check.ready else "Warning"
            ),
        )


async def release_rig(kind: HolderKind, rig: str, holder: str) -> None:
    """From a BeadStore, Refinery or Witness workflow that ends: the rig no longer has `holder`.

    A rig that is gone needs no telling.
    """
    handle = workflow.get_external_workflow_handle_for(
        RigWorkflow.run, attributes.workflow_id("Rig", None, rig)
    )
    # Histories of earlier versions signalled `release_<kind>` here: they replay all the same, as a
    # replay matches this command by its kind, not by the signal's name (tests/data/histories).
    with contextlib.suppress(FailureError):
        await handle.signal(RigWorkflow.release, RigRelease(kind=kind, holder=holder))


def _from_problem(problem: str) -> RigCheck:
    """The check as 9a5bc38's `git.check_rig` answered it (a problem, or empty), in a replayed history."""
    if problem:
        return RigCheck(reason="CheckoutUnusable", message=problem)
    return RigCheck(ready=True, reason="CheckoutReady", message="checkout ready")
