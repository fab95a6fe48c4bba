"""The Refinery workflow: a rig's merge queue, `refinery/<namespace>/<name>`.

Policy only; git work is in activities/merges.py. Branches join the queue in
order: each Succeeded polecat of the rig (a heartbeating activity watches for
them, one visibility query a look), and any branch enqueued by hand. The
refinery takes up to `batchSize` Pending entries from the head, stacks them on
the target's latest commit (a candidate), runs the required checks once on
the candidate, and lands it with a fast-forward push. It lands one candidate
at a time, so the target only ever moves to a commit whose checks passed.

- A branch that conflicts is left out of the candidate: with
  conflictResolution manual it becomes Conflict (its files in
  `status.conflicts`) and its polecat goes Succeeded -> Failed; the queue
  moves on.
- A candidate whose checks fail is bisected (batches): each half is tried
  again on the then-latest target, until the culprit stands alone; it is
  rejected (its polecat Failed, ChecksFailed) and the others land.
- With autoMerge false a tested candidate is Ready and waits for approval
  (`gastown refinery approve`, the `approve` signal, or the Refinery's
  `refinery.gastown.gastown.io/approve` annotation); the queue is Blocked meanwhile.
- A target that moved under a tested candidate is never forced: the
  candidate is made again on the new target and tested again.
- While a candidate lands, the next batch's candidate is made on its tip
  (`Ahead`), so landing and the next merge overlap; a landing that fails
  discards it.

Phase: Processing while a candidate is prepared, checked or landed; Blocked
while landing waits for a person (an approval) or for the remote (unusable;
retried every 30 s); Idle otherwise (the queue is empty or holds only
Conflict entries).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from contracts import attributes, heartbeats
    from contracts.merges import (
        Candidate,
        CheckRequest,
        Landed,
        MergeActivities,
        Part,
        PrepareRequest,
        Recipe,
    )
    from contracts.status import EventNote, StatusTarget
    from contracts.visibility import FinishedPolecats, SucceededWatch, VisibilityActivities
    from crds.common import check_branch_name, parse_duration
    from crds.refinery import (
        APPROVE_ANNOTATION,
        RECENT,
        CheckResult,
        Landing,
        LastMerge,
        MergeConflict,
        Outcome,
        QueueEntry,
        QueueEntryStatus,
        Refinery,
        RefineryPhase,
        RefineryStatus,
    )
    from crds.rig import Rig
    from workflows.entity import Entity, EntityState
    from workflows.failures import message_of, reason_of
    from workflows.history import HISTORY_LIMIT, history_full
    from workflows.hosts import HostOptions, on_host
    from workflows.polecat import PolecatWorkflow
    from workflows.polecat_models import MergeVerdict
    from workflows.rig import release_rig

RETRY_BLOCKED = timedelta(seconds=30)
# Approvals of branches not queued (yet) are kept, the newest this many: state stays bounded.
MAX_APPROVALS = 1000
FORGET_AFTER = timedelta(minutes=10)  # a polecat run unseen this long may be queued again if it reappears
GIT = RetryPolicy(
    maximum_attempts=5,
    non_retryable_error_types=["RigHasNoRemote", "TargetMissing", "TargetMoved", "CandidateLost"],
)


class EnqueueRequest(BaseModel):
    """A branch queued by hand (`gastown refinery enqueue`)."""

    branch: str
    polecat: str | None = None
    namespace: str | None = None
    bead_id: str | None = None


@dataclass
class Ahead:
    """The next branches' candidate, being made on the tip of the candidate being landed."""

    branches: list[str]
    candidate: asyncio.Task[Candidate | None]


class RefineryState(EntityState):
    """All that continue-as-new carries."""

    status: RefineryStatus = Field(default_factory=RefineryStatus)
    runs: dict[str, str | None] = Field(default_factory=dict)  # branch -> uid of the polecat run queued
    handled: dict[str, datetime] = Field(default_factory=dict)  # polecat run@commit -> last seen Succeeded
    finished: str | None = None  # digest of the Succeeded polecats last seen
    # Branches approved by signal and not yet landed (or otherwise out of the queue): an approval
    # given before its branch is queued, or while its entry is remade, is never lost.
    approvals: list[str] = Field(default_factory=list)


class RefineryInput(BaseModel):
    refinery: Refinery
    rig: Rig
    state: RefineryState | None = None
    history_limit: int = HISTORY_LIMIT
    status_target: StatusTarget | None = None
    retry_blocked: timedelta = RETRY_BLOCKED


@workflow.defn(name="Refinery")
class RefineryWorkflow(Entity[Refinery, RefineryState]):
    RESOURCE_FIELD = "refinery"
    SPEC_MEMO_ALWAYS_BEFORE = True

    @workflow.init
    def __init__(self, input: RefineryInput) -> None:
        super().__init__(input, RefineryState())
        self.rig = input.rig
        self.nudged = False  # something a blocked wait should wake for
        self.retry_blocked = input.retry_blocked
        self.history_limit = input.history_limit

    @property
    def refinery(self) -> Refinery:
        return self.resource

    # --- what people, the bridge and the Temporal UI send ---------------------

    def applied(self, before: Refinery, outcome: str) -> str:
        """Branches named in the approve annotation are approved (a new one is a change)."""
        approvals = _approvals(self.refinery)
        if outcome == "unchanged" and approvals != _approvals(before):
            outcome = "configured"
        for branch in approvals:
            self._approve(branch)
        self.nudged = True
        self.publish(None)
        return outcome

    @workflow.update
    def enqueue(self, requests: list[EnqueueRequest]) -> list[int]:
        """Queue branches, in order (a branch in Conflict again); returns each one's place, from 1."""
        for request in requests:
            self._enqueue(request, uid=None, commit=None)
        queued = [entry.branch for entry in self.state.status.queue]
        return [1 + queued.index(request.branch) for request in requests]

    @enqueue.validator
    def _validate_enqueue(self, requests: list[EnqueueRequest]) -> None:
        """All of them are valid, or none is queued."""
        for request in requests:
            try:
                check_branch_name(request.branch)
            except ValueError as error:
                raise ApplicationError(
                    f"branch {request.branch!r}: {error}", type="InvalidBranch", non_retryable=True
                ) from None
            if request.branch == self.refinery.spec.target_branch:
                raise ApplicationError(
                    f"branch {request.branch!r}: is the target branch",
                    type="InvalidBranch",
                    non_retryable=True,
                )

    @workflow.update
    def dequeue(self, branch: str) -> None:
        entry = self._entry(branch)
        assert entry is not None  # validated
        self._leave_queue(entry)
        self._settle_conflicts()
        self.nudged = True
        self.publish(None)

    @dequeue.validator
    def _validate_dequeue(self, branch: str) -> None:
        entry = self._entry(branch)
        if entry is None:
            raise ApplicationError(f"{branch} is not in the queue", type="NotQueued", non_retryable=True)
        if entry.status == "Testing":
            raise ApplicationError(
                f"{branch} is being tested; dequeue it once its checks are done",
                type="BeingTested",
                non_retryable=True,
            )

    @workflow.signal
    def approve(self, branch: str) -> None:
        """Approve a branch to land (autoMerge false), queued or not yet; the Temporal UI can send this."""
        if branch not in self.state.approvals:
            self.state.approvals = [*self.state.approvals, branch][-MAX_APPROVALS:]
        if self._entry(branch) is None:
            workflow.logger.info("approve: %s is not queued yet; it lands approved when it is", branch)
        self._approve(branch)
        self.nudged = True
        self.publish(None)

    # --- the loop -------------------------------------------------------------

    @workflow.run
    async def run(self, input: RefineryInput) -> RefineryStatus:
        self.begin(publish=input.state is None)
        following = asyncio.create_task(self._follow_succeeded())
        ahead: Ahead | None = None  # the next candidate, made while the last one landed
        while True:
            if ahead is not None:
                batch, prepared = ahead.branches, await ahead.candidate
                ahead = None
            else:
                batch, prepared = ([] if self.deleted else self._next_batch()), None
            if batch and not self.deleted and (prepared is not None or not history_full(input.history_limit)):
                ahead = await self._process(batch, prepared)
                continue
            if self.deleted:
                _stop(following)
                await release_rig(
                    "Refinery", self.rig.name, f"{self.refinery.namespace}/{self.refinery.name}"
                )
                return self.state.status
            if self.state.status.phase != "Idle" or not self.state.status.message:
                self._set_phase("Idle", self._idle_message())
            self.nudged = False
            await workflow.wait_condition(
                lambda: self.deleted or bool(self._next_batch()) or history_full(input.history_limit)
            )
            if not self.deleted and history_full(input.history_limit):
                _stop(following)
                await self.roll_over(input)

    def _next_batch(self) -> list[str]:
        pending = [entry.branch for entry in self.state.status.queue if entry.status == "Pending"]
        return pending[: self.refinery.spec.batch_size]

    async def _process(
        self, branches: list[str], prepared: Candidate | None = None, ahead: bool = True
    ) -> Ahead | None:
        """Land the branches, stacked, or find out which of them cannot land and why.

        `prepared`: their candidate, made while the one before them landed; used if it still fits.
        With `ahead`, the next branches' candidate is made on this one's tip while this one lands
        (returned, for the next round): what overlaps the landing with the next merge.
        """
        while True:  # again when the target moved under a tested candidate
            entries = [entry for entry in map(self._entry, branches) if entry is not None]
            if not entries or self.deleted:
                return None
            for entry in entries:
                self._mark(entry, "Testing", f"being stacked on {self.refinery.spec.target_branch}")
            self._set_phase("Processing", f"testing {', '.join(branches)}")
            fits = prepared is not None and [part.branch for part in prepared.recipe.parts] == branches
            candidate = prepared if fits else await self._prepare(entries)
            prepared = None
            if candidate is None:
                return None  # Blocked a while; its entries are Pending again
            await self._settle_left_out(candidate)
            if candidate.tip is None:
                return None
            stacked = [entry for entry in map(self._entry, candidate.stacked) if entry is not None]
            results = await self._check(candidate, stacked)
            if results is None:
                return None  # as above
            if not all(result.passed for result in results):
                await self._bisect(stacked, results)
                return None
            for entry in stacked:
                self._mark(entry, "Ready", f"checks passed on {candidate.tip[:12]}", checks=results)
            self.publish(None)
            if not await self._approved([entry.branch for entry in stacked]):
                continue  # an entry was dequeued, or the spec changed: make the candidate again
            # Not when the history is full: the run then ends after this landing, and carries no candidate over.
            next_one = (
                self._prepare_ahead(candidate) if ahead and not history_full(self.history_limit) else None
            )
            landed = await self._land(candidate)
            if landed is None:
                await self._discard(next_one)
                continue
            await self._record_landing(candidate, landed)
            return next_one

    def _prepare_ahead(self, landing: Candidate) -> Ahead | None:
        """Start making the next batch's candidate on the tip of the one being landed."""
        branches = self._next_batch()
        entries = [entry for entry in map(self._entry, branches) if entry is not None]
        if not entries:
            return None
        for entry in entries:
            self._mark(
                entry, "Testing", f"being stacked on {landing.tip and landing.tip[:12]}, which is landing"
            )
        self.publish(None)
        return Ahead(branches=branches, candidate=asyncio.create_task(self._prepare(entries, on=landing)))

    async def _discard(self, ahead: Ahead | None) -> None:
        """A candidate made on a tip that did not land: of no use; its branches wait again."""
        if ahead is None:
            return
        await ahead.candidate
        for entry in map(self._entry, ahead.branches):
            if entry is not None and entry.status == "Testing":
                self._mark(entry, "Pending", "queued")
        self.publish(None)

    async def _bisect(self, stacked: list[QueueEntry], results: list[CheckResult]) -> None:
        """Red: a lone entry is the culprit; a batch is split and each half tried on its own."""
        if len(stacked) == 1:
            failed = results[-1]
            why = f"check `{failed.command}` failed"
            why += f" (exit {failed.exit_code})" if failed.exit_code is not None else ""
            detail = f"{why}; last output:\n{failed.output}" if failed.output else why
            stacked[0].checks = results
            await self._finish(stacked[0], "Rejected", "ChecksFailed", detail)
            return
        for entry in stacked:
            self._mark(
                entry, "Pending", "its batch failed its checks; trying it in a smaller one", checks=results
            )
        half = len(stacked) // 2
        await self._process([entry.branch for entry in stacked[:half]], ahead=False)
        await self._process([entry.branch for entry in stacked[half:]], ahead=False)

    # --- activities -----------------------------------------------------------

    async def _prepare(self, entries: list[QueueEntry], on: Candidate | None = None) -> Candidate | None:
        """The entries' candidate; None if it cannot be made now (Blocked a while, unless made ahead)."""
        spec = self.refinery.spec
        recipe = Recipe(
            rig=self.rig.name,
            target=spec.target_branch,
            strategy=spec.strategy,
            resolution=spec.conflict_resolution,
            refinery=f"{self.refinery.namespace}/{self.refinery.name}",
            when=workflow.now(),
            parts=[
                Part(branch=e.branch, polecat=e.polecat, namespace=e.namespace, bead_id=e.bead_id)
                for e in entries
            ],
        )
        try:
            return await workflow.execute_activity_method(
                MergeActivities.prepare,
                PrepareRequest(rig=self.rig.spec, recipe=recipe, on=on),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=GIT,
                **self._merging_host(),
            )
        except ActivityError as error:
            if on is None:
                await self._blocked(entries, error)
            return None  # made ahead: it is made again, the usual way, when its turn comes

    async def _check(self, candidate: Candidate, stacked: list[QueueEntry]) -> list[CheckResult] | None:
        commands = self.refinery.spec.required_checks
        if not commands:
            return []
        timeout = parse_duration(self.refinery.spec.check_timeout)
        try:
            return await workflow.execute_activity_method(
                MergeActivities.check,
                CheckRequest(candidate=candidate, commands=commands, timeout=timeout),
                start_to_close_timeout=timeout * len(commands) + timedelta(minutes=5),
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=GIT,
                **self._merging_host(),
            )
        except ActivityError as error:
            if reason_of(error) == "CandidateLost":
                for entry in stacked:
                    self._mark(entry, "Pending", "queued")  # made again when taken next
                return None
            await self._blocked(stacked, error)
            return None

    async def _land(self, candidate: Candidate) -> Landed | None:
        """The candidate on the remote's target; None if the target moved (it is made again, never forced)."""
        try:
            return await workflow.execute_activity_method(
                MergeActivities.land,
                candidate,
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=GIT,
                **self._merging_host(),
            )
        except ActivityError as error:
            entries = [entry for entry in map(self._entry, candidate.stacked) if entry is not None]
            if reason_of(error) in ("TargetMoved", "CandidateLost"):
                for entry in entries:
                    self._mark(entry, "Testing", f"{self.refinery.spec.target_branch} moved; testing again")
                return None
            await self._blocked(entries, error)
            return None

    def _merging_host(self) -> HostOptions:
        """Merges run on any worker, but for a rig known only by its checkout (no gitURL): its
        remote is the checkout's origin, read on the checkout's host."""
        return on_host(None if self.rig.spec.git_url else self.rig.host)

    async def _blocked(self, entries: list[QueueEntry], error: ActivityError) -> None:
        """The remote cannot be used: Blocked, saying why, until a retry (or a new spec) a while later."""
        for entry in entries:
            self._mark(entry, "Pending", "waiting for the remote")
        self._set_phase("Blocked", f"{message_of(error)}; trying again every {self.retry_blocked}")
        self.nudged = False
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self.nudged or self.deleted, timeout=self.retry_blocked)

    async def _approved(self, branches: list[str]) -> bool:
        """Wait (Blocked) until every branch is approved; False if one left the queue or the spec changed."""
        spec = self.refinery.spec

        def entries() -> list[QueueEntry | None]:
            return [self._entry(branch) for branch in branches]

        if spec.auto_merge or all(entry and entry.approved for entry in entries()):
            return True
        waiting = [
            branch for branch, entry in zip(branches, entries(), strict=True) if entry and not entry.approved
        ]
        self._set_phase(
            "Blocked",
            f"waiting for approval of {', '.join(waiting)}: gastown refinery approve "
            f"{self.refinery.name} BRANCH -n {self.refinery.namespace}",
        )
        before = spec
        await workflow.wait_condition(
            lambda: (
                self.deleted
                or self.refinery.spec != before
                or None in entries()
                or all(entry and entry.approved for entry in entries())
            )
        )
        if self.deleted:
            return False
        self._set_phase("Processing", f"landing {', '.join(branches)}")
        return self.refinery.spec == before and None not in entries()

    async def _record_landing(self, candidate: Candidate, landed: Landed) -> None:
        status = self.state.status
        status.last_merge = LastMerge(
            branch=candidate.stacked[-1], timestamp=workflow.now(), commit=landed.commit
        )
        target = self.refinery.spec.target_branch
        for branch in candidate.stacked:
            entry = self._entry(branch)
            if entry is not None:
                message = f"merged into {target} as {landed.commit[:12]}"
                await self._finish(entry, "Merged", "Merged", message, landed.commit)
        status.merged += len(candidate.stacked)

    # --- the queue --------------------------------------------------------------

    async def _follow_succeeded(self) -> None:
        """Queue each Succeeded polecat of the rig once (runs for the workflow's life)."""
        while True:
            found: FinishedPolecats = await workflow.execute_activity_method(
                VisibilityActivities.watch_succeeded,
                SucceededWatch(rig=self.rig.name, seen=self.state.finished),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=heartbeats.watch_retry(),
                cancellation_type=workflow.ActivityCancellationType.TRY_CANCEL,
            )
            self.state.finished = found.digest()
            now = workflow.now()
            handled = self.state.handled
            for polecat in found.polecats:
                key = f"{polecat.uid}@{polecat.commit}"
                if key not in handled:
                    request = EnqueueRequest(
                        branch=polecat.branch,
                        polecat=polecat.name,
                        namespace=polecat.namespace,
                        bead_id=polecat.bead_id,
                    )
                    self._enqueue(request, uid=polecat.uid, commit=polecat.commit)
                handled[key] = now
            for key, seen in list(handled.items()):
                if now - seen > FORGET_AFTER:
                    del handled[key]

    def _enqueue(self, request: EnqueueRequest, uid: str | None, commit: str | None) -> None:
        entry = self._entry(request.branch)
        if entry is None:
            entry = QueueEntry(branch=request.branch, enqueued_at=workflow.now())
            self.state.status.queue.append(entry)
        elif entry.status in ("Testing", "Ready"):
            return  # in the candidate being landed; what the branch holds then is what lands
        entry.polecat = request.polecat or entry.polecat
        entry.namespace = (
            request.namespace or entry.namespace or (self.refinery.namespace if entry.polecat else None)
        )
        entry.bead_id = request.bead_id or entry.bead_id
        entry.commit = commit or entry.commit
        entry.approved = (
            entry.approved
            or request.branch in self.state.approvals
            or request.branch in _approvals(self.refinery)
        )
        self.state.runs[request.branch] = uid
        self._mark(entry, "Pending", "queued")
        self._settle_conflicts()
        self.publish(None)

    def _leave_queue(self, entry: QueueEntry) -> None:
        """The entry out of the queue, with what was kept for it: a branch of that name queued
        later is new work, of a run of its own, to be approved anew."""
        self.state.status.queue.remove(entry)
        self.state.runs.pop(entry.branch, None)
        self.state.approvals = [branch for branch in self.state.approvals if branch != entry.branch]

    def _approve(self, branch: str) -> None:
        entry = self._entry(branch)
        if entry is not None:
            entry.approved = True

    async def _settle_left_out(self, candidate: Candidate) -> None:
        """The entries the candidate could not take: conflicts, gone branches, branches already in."""
        target = self.refinery.spec.target_branch
        for branch, files in candidate.conflicts.items():
            entry = self._entry(branch)
            if entry is None:
                continue
            listing = ", ".join(files)
            how = (
                ""
                if self.refinery.spec.conflict_resolution == "manual"
                else (f" that conflictResolution {self.refinery.spec.conflict_resolution} could not resolve")
            )
            message = f"conflicts with {target}{how}: {listing}"
            await self._finish(entry, "Conflict", "MergeConflict", message, files=files)
        for branch in candidate.missing:
            entry = self._entry(branch)
            if entry is not None:
                await self._finish(entry, "Dropped", "BranchGone", f"{branch} is not on the rig's remote")
        for branch in candidate.already:
            entry = self._entry(branch)
            if entry is not None:
                await self._finish(entry, "Merged", "Merged", f"already in {target}")

    async def _finish(
        self,
        entry: QueueEntry,
        outcome: Outcome,
        reason: str,
        message: str,
        commit: str | None = None,
        files: list[str] | None = None,
    ) -> None:
        """An entry's outcome: recorded, told to its polecat, and the entry out of the queue (a Conflict stays)."""
        status = self.state.status
        meter = workflow.metric_meter()  # replay-safe: nothing is recorded again on a replay
        labels = {"refinery": f"{self.refinery.namespace}/{self.refinery.name}"}
        meter.create_counter("gastown_refinery_outcomes", "Queue entries by outcome.").add(
            1, {**labels, "outcome": outcome}
        )
        if outcome == "Merged" and entry.enqueued_at is not None:
            latency = meter.create_histogram_timedelta(
                "gastown_merge_latency",
                "From a branch queued (its polecat Succeeded) to landed.",
                unit="duration",
            )
            latency.record(workflow.now() - entry.enqueued_at, labels)
        landing = Landing(
            branch=entry.branch,
            polecat=entry.polecat,
            bead_id=entry.bead_id,
            outcome=outcome,
            commit=commit,
            reason=reason,
            message=message,
            timestamp=workflow.now(),
        )
        status.recent = [landing, *status.recent][:RECENT]
        uid = self.state.runs.get(entry.branch)
        if outcome == "Conflict":
            self._mark(entry, "Conflict", message)
            self._settle_conflicts(files_of={entry.branch: files or []})
        else:
            self._leave_queue(entry)
            self._settle_conflicts()
        kind = "Normal" if outcome == "Merged" else "Warning"
        self.publish(EventNote(reason=reason, message=f"{entry.branch}: {message}", type=kind))
        if outcome != "Dropped" and entry.polecat:
            verdict = MergeVerdict(
                uid=uid,
                merged=outcome == "Merged",
                reason=reason,
                message=f"{message} (refinery {self.refinery.namespace}/{self.refinery.name})",
            )
            await self._tell_polecat(entry, verdict)

    def _settle_conflicts(self, files_of: dict[str, list[str]] | None = None) -> None:
        """status.conflicts: one line per Conflict entry still queued."""
        known = {conflict.branch: conflict.files for conflict in self.state.status.conflicts}
        known.update(files_of or {})
        self.state.status.conflicts = [
            MergeConflict(branch=entry.branch, files=known.get(entry.branch, []))
            for entry in self.state.status.queue
            if entry.status == "Conflict"
        ]

    async def _tell_polecat(self, entry: QueueEntry, verdict: MergeVerdict) -> None:
        namespace = entry.namespace or self.refinery.namespace
        workflow_id = attributes.workflow_id("Polecat", namespace, entry.polecat or "")
        polecat = workflow.get_external_workflow_handle_for(PolecatWorkflow.run, workflow_id)
        with contextlib.suppress(FailureError):  # the polecat is gone: nothing to tell
            await polecat.signal(PolecatWorkflow.merge_verdict, verdict)

    # --- status -------------------------------------------------------------------

    def _entry(self, branch: str) -> QueueEntry | None:
        return next((entry for entry in self.state.status.queue if entry.branch == branch), None)

    def _mark(
        self,
        entry: QueueEntry,
        status: QueueEntryStatus,
        message: str,
        checks: list[CheckResult] | None = None,
    ) -> None:
        """An entry's status and message (published by the caller, once for all it marks)."""
        entry.status = status
        entry.message = message
        if checks is not None:
            entry.checks = checks

    def _idle_message(self) -> str:
        conflicts, merged = len(self.state.status.conflicts), self.state.status.merged
        return f"{conflicts} in conflict; {merged} merged" if conflicts else f"queue empty; {merged} merged"

    def _set_phase(self, phase: RefineryPhase, message: str) -> None:
        """The phase and its message, with an Event when the phase changes."""
        event = None
        if phase != self.state.status.phase:
            event = EventNote(
                reason=phase, message=message, type="Warning" if phase == "Blocked" else "Normal"
            )
        self.state.status.message = message
        self.set_phase(phase, event)


def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a task that waits on an activity, without waiting for it: the workflow goes on (or ends)
    at once. Its outcome, the activity's cancellation, is read when it comes, so it is not logged as
    an exception nobody retrieved."""
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    task.cancel()


def _approvals(refinery: Refinery) -> set[str]:
    """Branches the Refinery's approve annotation names."""
    value = refinery.metadata.annotations.get(APPROVE_ANNOTATION, "")
    return {branch for branch in re.split(r"[,\s]+", value) if branch}
