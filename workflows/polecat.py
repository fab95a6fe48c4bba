"""The Polecat workflow: one agent's durable life, from Pending to a final phase.

Policy only. The spec's desired state arrives by the `apply` update (from
`gastown apply` or the Kubernetes bridge) or the `terminate` signal (from
`gastown terminate` or the Temporal UI); the loop in `run` moves the actual
state towards it through activities. Every phase change goes through
`_set_phase`, which keeps status, conditions, the search attribute and the
memo in step.

History stays bounded: the agent is watched by one long heartbeating
activity (heartbeats are not history events), and the loop continues as new
when the server suggests it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from contracts import attributes, heartbeats
    from contracts.beads import Bead, BeadActivities, BeadLookup
    from contracts.git import BranchRequest, GitActivities, WorktreeRequest
    from contracts.hosts import HostActivities
    from contracts.pods import PodActivities, PodLaunch
    from contracts.providers import (
        AdmitRequest,
        LimitNotice,
        ProviderActivities,
        provider_of,
        provider_of_gate,
    )
    from contracts.status import EventNote
    from contracts.tmux import AgentExit, AgentLaunch, AgentSession, RateLimit, TmuxActivities
    from crds.common import rfc3339, set_condition
    from crds.polecat import (
        FINAL_PHASES,
        MAX_RESTARTS,
        NAMED_AGENTS,
        NUDGE_ANNOTATION,
        TRANSITIONS,
        FollowUpSource,
        Polecat,
        PolecatPhase,
        PolecatStatus,
        change_problems,
    )
    from crds.usage import Budget, Usage, format_cost
    from workflows import follow_ups
    from workflows.entity import Entity
    from workflows.failures import message_of, reason_of
    from workflows.history import history_full
    from workflows.hosts import host_gone, not_taken, on_host, wait_of
    from workflows.polecat_models import (
        HostLost,
        MergeVerdict,
        PolecatInput,
        PolecatState,
        ProviderSlot,
        Remedy,
        Termination,
    )
    from workflows.provider import ProviderWorkflow

# What earlier versions did, kept for their histories: no provider gate before an agent starts.
PROVIDER_GATE = "polecat-provider-gate"
FINISHED = ("Succeeded", "Failed")  # a run's ends that a follow-up (a nudge) goes on from
SHORT = timedelta(minutes=2)
# An agent may run for days; the watcher's real liveness bound is its heartbeat.
WATCH_LIMIT = timedelta(days=30)
RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=["RigNotReady", "WorktreeConflict"])
Result = TypeVar("Result")


@workflow.defn(name="Polecat")
class PolecatWorkflow(Entity[Polecat, PolecatState]):
    RESOURCE_FIELD = "polecat"
    PHASE_ATTRIBUTE_BEFORE = "publish"

    @workflow.init
    def __init__(self, input: PolecatInput) -> None:
        first = PolecatState(
            status=PolecatStatus(bead_id=input.polecat.spec.bead_id), desired=input.polecat.spec.desired_state
        )
        super().__init__(input, first)
        self.rig = input.rig
        self.bead_source = input.bead_source
        self.budget_changed = False  # by an apply, while a watcher holds the agent to the old one

    @property
    def polecat(self) -> Polecat:
        return self.resource

    # --- what people and the bridge send ------------------------------------

    def applied(self, before: Polecat, outcome: str) -> str:
        spec = self.polecat.spec
        if spec.desired_state == "Terminated":
            self._terminate("DesiredStateTerminated", "terminated: desiredState Terminated was applied")
        elif self.state.termination is None:
            self.state.desired = spec.desired_state
        if spec.budget != before.spec.budget:
            self.budget_changed = True
            self._continue_if_budget_allows()
        nudge = self.polecat.metadata.annotations.get(NUDGE_ANNOTATION)
        if nudge and follow_ups.digest(nudge) != self.state.follow_ups.annotation:  # each value once
            self.state.follow_ups.annotation = follow_ups.digest(nudge)
            self._take_follow_up(nudge, "annotation")
        if outcome == "configured":
            self.publisher.offer(self.state.status.to_wire(), self.polecat.metadata.generation, None)
        return outcome

    def _continue_if_budget_allows(self) -> None:
        """A polecat stopped by its budget goes on, in a new attempt, once an apply leaves it room."""
        status, budget = self.state.status, self.polecat.spec.budget
        if status.phase != "Failed" or self._failed_reason() != "BudgetExceeded" or self._stopping():
            return
        if self.state.desired != "Working" or (budget is not None and budget.exceeded(status.usage)):
            return
        room = "no budget" if budget is None else f"a budget of {_limits(budget)}"
        self.state.remedy = Remedy(
            uid=self.polecat.metadata.uid,
            attempt=status.restarts,
            action="restart",
            reason="BudgetRaised",
            message=f"continued after its spec.budget was raised ({room}; spent {_spent(status.usage)})",
        )

    def _failed_reason(self) -> str | None:
        return next((c.reason for c in self.state.status.conditions if c.type == "Failed"), None)

    def check_apply(self, polecat: Polecat) -> None:
        current = self.polecat.model_copy(update={"status": self.state.status})
        problems = change_problems(current, polecat)
        if problems:
            raise ApplicationError("; ".join(problems), type="InvalidChange", non_retryable=True)

    @workflow.signal
    def terminate(self) -> None:
        """Stop the agent for good (the Temporal UI can send this with no input).

        The spec is left as it was applied (the CR on a cluster stays the one source of it);
        the status says the polecat was terminated, and how.
        """
        self._terminate(
            "TerminateSignal", "terminated by the terminate signal (gastown terminate or the Temporal UI)"
        )

    def _terminate(self, reason: str, message: str) -> None:
        """Terminated for good: the first word on it is the one the status keeps."""
        self.state.desired = "Terminated"
        if self.state.termination is None:
            self.state.termination = Termination(reason=reason, message=message)

    @workflow.update
    def follow_up(self, message: str, sender: str = "cli") -> str:
        """A person's follow-up for the agent (`gastown nudge`; the board says `board`): what
        becomes of it."""
        return self._take_follow_up(message, "board" if sender == "board" else "cli")

    @follow_up.validator
    def _check_follow_up(self, message: str, sender: str = "cli") -> None:
        try:
            follow_ups.checked(message)
        except ValueError as error:
            raise ApplicationError(str(error), type="InvalidFollowUp", non_retryable=True) from None
        refusal = self._follow_up_refusal()
        if refusal is not None:
            raise ApplicationError(f"nudge refused: {refusal}", type="InvalidFollowUp", non_retryable=True)

    @workflow.update
    def restart(self) -> str:
        """A person's restart (`gastown restart`, the board): a new attempt of a Working or Failed
        polecat, its work kept; not counted against a Witness's MAX_RESTARTS."""
        status = self.state.status
        self.state.remedy = Remedy(
            uid=self.polecat.metadata.uid,
            attempt=status.restarts,
            action="restart",
            reason="RestartedByHand",
            message="restarted on request (gastown restart or the town board)",
        )
        return "restarting: a new attempt, its work kept"

    @restart.validator
    def _check_restart(self) -> None:
        phase = self.state.status.phase
        if self._stopping() or phase not in ("Working", "Failed"):
            raise ApplicationError(
                f"restart refused: the polecat is {phase}; only a Working or Failed one restarts",
                type="InvalidRestart",
                non_retryable=True,
            )

    @workflow.signal
    def nudge(self, message: str) -> None:
        """A follow-up for the agent (the Temporal UI can send this): as `gastown nudge`; one that
        cannot be taken is in status.conversation as Refused, with why."""
        self._take_follow_up(message, "signal")

    def _follow_up_refusal(self) -> str | None:
        status, budget = self.state.status, self.polecat.spec.budget
        if self._stopping() or status.phase == "Terminated":
            return "the polecat is terminated: delete it and start a new one"
        if budget is not None and budget.exceeded(status.usage):
            return "its budget is spent: raise spec.budget first"
        if len(self.state.follow_ups.waiting) >= follow_ups.MAX_WAITING:
            return f"{follow_ups.MAX_WAITING} follow-ups already wait for the agent's next run"
        return None

    def _take_follow_up(self, message: str, source: FollowUpSource) -> str:
        """Queue the follow-up for the agent's next run, or record why it cannot be; what happens."""
        status, now = self.state.status, workflow.now()
        try:
            text = follow_ups.checked(message)
        except ValueError as error:
            follow_ups.refused(status, message, str(error), source, now)
            self.publish(EventNote(reason="FollowUpRefused", message=str(error), type="Warning"))
            return f"refused: {error}"
        refusal = self._follow_up_refusal()
        if refusal is not None:
            follow_ups.refused(status, text, refusal, source, now)
            self.publish(EventNote(reason="FollowUpRefused", message=refusal, type="Warning"))
            return f"refused: {refusal}"
        follow_ups.queued(self.state.follow_ups, status, text, source, now)
        if status.phase in ("Succeeded", "Failed"):
            what = "the agent's session is resumed with it"
        elif status.phase == "Working":
            what = "queued: the agent gets it when its current run ends"
        else:
            what = "queued: the agent gets it when its next run starts"
        self.publish(EventNote(reason="FollowUp", message=f"follow-up {what}"))
        return what

    @workflow.signal
    async def admitted(self, gate: str) -> None:
        """From a provider's gate: the slot asked for is ours. One no longer wanted is given back."""
        slot = self.state.slot
        if slot is not None and slot.provider == provider_of_gate(gate):
            slot.gate, slot.admitted = gate, True
        else:
            await self._give_back(gate)

    @workflow.signal
    def merge_verdict(self, verdict: MergeVerdict) -> None:
        """From the refinery: the branch landed (condition Merged), or it cannot (Succeeded -> Failed).

        A branch fixed by hand after a conflict and queued again may land later: the Failed polecat
        then gains the Merged condition too.
        """
        phase = self.state.status.phase
        if verdict.uid not in (None, self.polecat.metadata.uid):
            return  # meant for an earlier run of this name
        if phase not in ("Succeeded", "Failed") or (phase == "Failed" and not verdict.merged):
            return
        if not verdict.merged:
            self._set_phase("Failed", verdict.reason, verdict.message)
            return
        status = self.state.status
        status.message = verdict.message
        status.conditions = set_condition(
            status.conditions, "Merged", "True", verdict.reason, verdict.message, workflow.now()
        )
        self.publish(EventNote(reason=verdict.reason, message=verdict.message))

    @workflow.signal
    def remedy(self, remedy: Remedy) -> None:
        """From a Witness: restart the agent (a new attempt, at most MAX_RESTARTS), terminate, or fail it."""
        status = self.state.status
        if remedy.uid != self.polecat.metadata.uid or remedy.attempt != status.restarts:
            return  # decided for another run or attempt
        if remedy.action == "terminate":
            self._terminate("WitnessTerminated", remedy.message)
        elif remedy.action == "restart":
            if status.phase in ("Working", "Failed") and status.restarts < MAX_RESTARTS:
                self.state.remedy = remedy
        elif status.phase == "Working":
            self.state.remedy = remedy

    # --- the reconcile loop --------------------------------------------------

    @workflow.run
    async def run(self, input: PolecatInput) -> PolecatStatus:
        self.begin(publish=input.state is None)
        while True:
            await workflow.wait_condition(lambda: self._has_work() or history_full(input.history_limit))
            if self._has_work():
                if self.state.deleted:
                    await self._stop_agent()
                    return self.state.status
                await self._reconcile()
            elif history_full(input.history_limit):
                await self.roll_over(input)

    async def _reconcile(self) -> None:
        """One step of the actual state towards the desired state."""
        if self.state.desired == "Terminated":
            await self._stop_agent()
            self.state.parked = None
            how = self.state.termination or Termination(reason="Terminated", message="terminated on request")
            self._set_phase("Terminated", how.reason, how.message)
        elif self.state.remedy is not None:
            await self._carry_out(self.state.remedy)
        elif self.state.desired == "Working" and self.state.parked is not None:
            await self._resume_after(self.state.parked)
        elif self._follow_up_due():
            await self._follow_up()
        elif self.state.desired == "Working":
            await self._work()
        else:
            self.state.parked = None
            self._set_phase("Idle", "Idle", "waiting for work")

    def _has_work(self) -> bool:
        phase, desired = self.state.status.phase, self.state.desired
        return (
            self.state.deleted
            or (desired == "Terminated" and phase != "Terminated")
            or (desired == "Working" and phase in ("Pending", "Idle"))
            or (desired == "Idle" and phase == "Pending")
            or self.state.remedy is not None
            or self._follow_up_due()
        )

    def _follow_up_due(self) -> bool:
        """A follow-up waits and nothing runs to take it: the agent's session is resumed for it."""
        phase = self.state.status.phase
        return bool(self.state.follow_ups.waiting) and self.state.desired == "Working" and phase in FINISHED

    def _interrupted(self) -> bool:
        """The running agent must stop: for good, or for a Witness's order."""
        return self._stopping() or self.state.remedy is not None

    async def _carry_out(self, remedy: Remedy) -> None:
        """A Witness's restart or fail, once the agent has been stopped."""
        self.state.remedy = None
        await self._stop_agent()
        if remedy.action == "fail":
            self._set_phase("Failed", remedy.reason, remedy.message)
            return
        status = self.state.status
        status.restarts += 1
        status.last_restart_time = workflow.now()
        status.completion_time = status.exit_code = None
        status.conditions = set_condition(
            status.conditions, "Restarted", "True", remedy.reason, remedy.message, workflow.now()
        )
        await self._work()

    async def _follow_up(self) -> None:
        """A finished polecat goes on for a follow-up: a new run of its agent, resuming its session
        where the CLI can, its commits kept (Succeeded or Failed -> Working)."""
        status = self.state.status
        status.follow_ups += 1
        status.last_restart_time = workflow.now()
        status.completion_time = status.exit_code = None
        if any(c.type == "Merged" and c.status == "True" for c in status.conditions):
            # Its new commits are not merged yet: the Refinery takes them as a new entry.
            status.conditions = set_condition(
                status.conditions, "Merged", "False", "FollowUp", "new work since the merge", workflow.now()
            )
        await self._work()

    def _later_attempt(self) -> bool:
        """Not the agent's first run: it continues its session and work where it can."""
        status = self.state.status
        return status.restarts > 0 or status.resumes > 0 or status.follow_ups > 0

    def _stopping(self) -> bool:
        return self.state.deleted or self.state.desired == "Terminated"

    async def _work(self) -> None:
        readable, bead = await self._read_bead()
        if not readable:
            return
        if self.polecat.spec.execution_mode == "kubernetes":
            await self._work_in_pod(bead)
            return
        try:
            worktree = await self._on_host(
                GitActivities.prepare_worktree,
                WorktreeRequest(
                    rig_name=self.rig.name,
                    rig=self.rig.spec,
                    namespace=self.polecat.namespace,
                    polecat=self.polecat.name,
                    uid=self.polecat.metadata.uid or "",
                    branch=self.polecat.work_branch,
                ),
                start_to_close_timeout=SHORT,
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=RETRY,
            )
            self._pin(worktree.host)
            if not await self._slot_of_provider():
                return
            # A later attempt continues the agent's session where its CLI can.
            launch = AgentLaunch(
                polecat=self.polecat,
                worktree=worktree.path,
                branch=worktree.branch,
                bead=bead,
                resume=self._later_attempt(),
                follow_up=follow_ups.deliver(self.state.follow_ups, self.state.status),
            )
            session = await self._on_host(
                TmuxActivities.start_agent,
                launch,
                start_to_close_timeout=SHORT,
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=RETRY,
            )
        except ActivityError as error:
            self._fail(error)
            return
        self.state.session = session
        self.state.worktree = worktree.path
        status = self.state.status
        status.tmux_session = session.session
        status.branch = worktree.branch
        status.log_file = session.log_file
        status.start_time = status.start_time or workflow.now()
        message = f"agent {self.polecat.spec.agent} running in tmux session {session.session}"
        self._set_phase("Working", "AgentRunning", "; ".join([message, *session.warnings]))
        await self._watch(session)

    async def _watch(self, session: AgentSession) -> None:
        try:
            result = await self._agent_exit(session)
        except ActivityError as error:
            self._fail(error)
            return
        if result is None:
            return  # interrupted: the loop stops the agent
        slot = self.state.slot
        await self._stop_agent()  # the pane is dead (or the agent over its budget); this removes the session
        if await self._stopped_early(result.over_budget, result.rate_limited, slot):
            return
        if result.exit_code != 0:
            self.state.status.exit_code = result.exit_code
            self._set_phase(
                "Failed",
                "AgentFailed",
                f"agent exited with code {result.exit_code}; last output:\n{result.tail}",
            )
            return
        try:
            branch = await self._on_host(
                GitActivities.publish_branch,
                BranchRequest(worktree=self.state.worktree or "", branch=self.polecat.work_branch),
                start_to_close_timeout=SHORT,
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=RETRY,
            )
        except ActivityError as error:
            self._fail(error)
            return
        self.state.status.exit_code = 0
        if branch.own_commits == 0 and self.polecat.spec.agent in NAMED_AGENTS:
            self._set_phase(
                "Failed",
                "NoCommits",
                f"{self.polecat.spec.agent} exited 0 but left no commit on {branch.branch}; "
                f"last output:\n{result.tail}",
            )
            return
        self.state.status.commit = branch.commit
        where = " (pushed to origin)" if branch.pushed else ""
        self._set_phase(
            "Succeeded", "AgentSucceeded", f"done: branch {branch.branch} at {branch.commit[:12]}{where}"
        )

    async def _stopped_early(
        self, over_budget: str | None, limit: RateLimit | None, slot: ProviderSlot | None
    ) -> bool:
        """Failed for a spent budget, or parked for a long limit (the agent stopped for it, or
        ending as it did); False if neither holds."""
        budget = self.polecat.spec.budget
        over_budget = over_budget or (budget.exceeded(self.state.status.usage) if budget else None)
        if over_budget:  # its last requests may have been refused, whatever its exit code says
            self._set_phase(
                "Failed",
                "BudgetExceeded",
                f"budget spent: {over_budget}; the agent was stopped, its work kept on branch "
                f"{self.state.status.branch}; "
                "raise spec.budget to continue",
            )
            return True
        if limit is not None:
            self._park(limit)
            if slot is not None:  # the gate admits no one of this provider until the reset
                await self._tell_limited(slot, limit)
            return True
        return False

    # --- a provider's long limit: parked, then resumed ------------------------------

    def _park(self, limit: RateLimit) -> None:
        """Pending until the limit resets, the agent stopped (a durable timer waits: `_resume_after`)."""
        self.state.parked = limit
        status = self.state.status
        message = (
            f"rate limited by {limit.provider} (HTTP {limit.status}) until {rfc3339(limit.until)}: the agent "
            f"was stopped and resumes then, in its session; its work is kept on branch {status.branch}"
        )
        status.conditions = set_condition(
            status.conditions, "RateLimited", "True", "RateLimited", message, workflow.now()
        )
        self._set_phase("Pending", "RateLimited", message)

    async def _resume_after(self, limit: RateLimit) -> None:
        """Wait for the limit's reset (unless the polecat is stopped or no longer wanted Working),
        then resume the agent: a new attempt in the same worktree and session."""
        remaining = (limit.until - workflow.now()).total_seconds()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._interrupted() or self.state.desired != "Working", timeout=remaining
                )
            if self._interrupted() or self.state.desired != "Working":
                return  # the loop takes it from here
        self.state.parked = None
        status = self.state.status
        status.resumes += 1
        status.last_restart_time = workflow.now()
        status.completion_time = status.exit_code = None
        status.conditions = set_condition(
            status.conditions,
            "RateLimited",
            "False",
            "RateLimitReset",
            f"the limit of {limit.provider} has reset: resumed",
            workflow.now(),
        )
        await self._work()

    async def _agent_exit(self, session: AgentSession) -> AgentExit | None:
        """How the agent exited, once it has; None if it must be stopped first (`_interrupted`).

        A host that goes away leaves the agent where it is: once a worker of the host is back,
        a new watcher adopts it.
        """
        while True:
            self.budget_changed = False
            watched = session.model_copy(update={"budget": self.polecat.spec.budget})
            watcher = self._start_watcher(
                TmuxActivities.watch_agent, watched, "SessionLost", **on_host(self._host(), self._waits())
            )
            try:
                result = await self._unless_interrupted(watcher, until=lambda: self.budget_changed)
            except ActivityError as error:
                if not not_taken(error):
                    raise
                self._host_lost()
                await self._on_host(HostActivities.here, start_to_close_timeout=SHORT)
                continue
            if result is not None or not self.budget_changed or self._interrupted():
                return result
            # a new budget: a new watcher holds the agent to it

    @staticmethod
    def _start_watcher(
        activity: Callable[..., Awaitable[Result]], argument: Any, lost: str, **options: Any
    ) -> workflow.ActivityHandle[Result]:
        """An activity that watches the agent for as long as it runs, beating; retried, but for `lost`."""
        return workflow.start_activity(
            activity,
            argument,
            start_to_close_timeout=WATCH_LIMIT,
            heartbeat_timeout=heartbeats.TIMEOUT,
            retry_policy=heartbeats.watch_retry(lost),
            cancellation_type=workflow.ActivityCancellationType.TRY_CANCEL,
            **options,
        )

    async def _unless_interrupted(
        self,
        watcher: workflow.ActivityHandle[Result],
        timeout: float | None = None,
        until: Callable[[], bool] = lambda: False,
    ) -> Result | None:
        """The watcher's result; None, with the watcher cancelled, if the agent must stop first
        (`_interrupted`), `until` holds, or `timeout` seconds pass (a durable timer)."""
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: watcher.done() or self._interrupted() or until(), timeout=timeout
            )
        if not watcher.done():
            watcher.cancel()  # TRY_CANCEL: resolves at once
            with contextlib.suppress(ActivityError):
                await watcher
            return None
        return watcher.result()

    async def _read_bead(self) -> tuple[bool, Bead | None]:
        """The bead's text from the rig's BeadStore, for the prompt; False if it must not be worked."""
        bead_id = self.polecat.spec.bead_id
        if not bead_id or self.bead_source is None:  # no BeadStore: the prompt names the bead only
            return True, None
        try:
            found = await self._on_host(
                BeadActivities.find,
                BeadLookup(source=self.bead_source, checkout=self.rig.spec.local_path, bead_ids=[bead_id]),
                start_to_close_timeout=SHORT,
                heartbeat_timeout=heartbeats.TIMEOUT,
                retry_policy=RETRY,
            )
        except ActivityError as error:
            self._fail(error)
            return False, None
        if not found:
            self._set_phase("Failed", "BeadNotFound", f"bead {bead_id} is not in the rig's BeadStore")
            return False, None
        self.state.status.bead_title = found[0].title[: follow_ups.SHOWN] or None
        if found[0].status == "closed":
            self._set_phase("Failed", "BeadClosed", f"bead {bead_id} is already closed; nothing to do")
            return False, None
        return True, found[0]

    async def _work_in_pod(self, bead: Bead | None) -> None:
        """The agent as a pod; its deadline is a durable timer as well as the pod's own."""
        kubernetes = self.polecat.spec.kubernetes
        assert kubernetes is not None and kubernetes.active_deadline_seconds is not None  # validated
        status = self.state.status
        try:
            if not await self._slot_of_provider():
                return
            pod = await workflow.execute_activity_method(
                PodActivities.start_pod,
                PodLaunch(
                    polecat=self.polecat,
                    bead=bead,
                    attempt=status.restarts + status.resumes + status.follow_ups,
                    resume=self._later_attempt(),
                    spent=status.usage,
                    follow_up=follow_ups.deliver(self.state.follow_ups, status),
                ),
                start_to_close_timeout=SHORT,
                retry_policy=RETRY,
            )
        except ActivityError as error:
            self._fail(error)
            return
        self.state.pod = pod
        status.pod_name = pod.name
        status.branch = self.polecat.work_branch
        status.start_time = status.start_time or workflow.now()
        self._set_phase(
            "Working", "AgentRunning", f"agent {self.polecat.spec.agent} running in pod {pod.name}"
        )
        began = status.last_restart_time or status.start_time  # each attempt has the whole deadline
        deadline = began + timedelta(seconds=kubernetes.active_deadline_seconds)
        watcher = self._start_watcher(PodActivities.watch_pod, pod, "PodLost")
        remaining = max((deadline - workflow.now()).total_seconds(), 0.0)
        try:
            result = await self._unless_interrupted(watcher, timeout=remaining)  # the deadline's timer
        except ActivityError as error:
            self._fail(error)
            return
        if result is None:
            if not self._interrupted():  # the deadline, not a person or a Witness, ended it
                await self._stop_agent()
                limit = kubernetes.active_deadline_seconds
                self._set_phase(
                    "Failed",
                    "DeadlineExceeded",
                    f"activeDeadlineSeconds ({limit}s) passed; the pod was deleted",
                )
            return
        slot = self.state.slot
        await self._release_slot()  # the pod has ended
        if result.usage is not None:  # over all attempts, as the pod's gateway counted
            status.usage = result.usage
        if await self._stopped_early(result.over_budget, result.rate_limited, slot):
            return
        status.exit_code = result.exit_code
        if not result.succeeded:
            self._set_phase("Failed", result.reason, result.message)
            return
        status.commit = result.commit
        self._set_phase(
            "Succeeded",
            "AgentSucceeded",
            f"done: branch {status.branch} at {(result.commit or '?')[:12]} (pushed)",
        )

    async def _stop_agent(self) -> None:
        """End the agent (its pod, or its tmux session) and give its provider's slot back."""
        usage = None
        if self.state.pod is not None:
            usage = await workflow.execute_activity_method(
                PodActivities.delete_pod,
                self.state.pod,
                start_to_close_timeout=SHORT,
                retry_policy=RetryPolicy(maximum_attempts=10),
            )
        if self.state.session is not None:
            usage = await self._on_host(
                TmuxActivities.stop_agent,
                self.state.session,
                start_to_close_timeout=SHORT,
                retry_policy=RetryPolicy(maximum_attempts=10),
            )
        spent = self.state.status.usage
        # The figure of all attempts so far; an ended pod's log may be older than its report.
        if usage is not None and (spent is None or usage.requests >= spent.requests):
            self.state.status.usage = usage
        await self._release_slot()

    # --- its provider's gate: at most N agents of a provider at once ---------------

    async def _slot_of_provider(self) -> bool:
        """A slot of the agent's provider, where the workers gate it; False if the polecat must stop
        (terminated, a Witness's order) while it waits, first come first served."""
        provider = provider_of(self.polecat.spec)
        if provider is None or not workflow.patched(PROVIDER_GATE):
            return True
        slot = self.state.slot
        if slot is None:
            # Asked for before the gate is asked: its `admitted` may come before the answer below.
            slot = self.state.slot = ProviderSlot(provider=provider)
            admission = await workflow.execute_activity_method(
                ProviderActivities.admit,
                self._admit_request(provider),
                start_to_close_timeout=SHORT,
                retry_policy=RETRY,
            )
            if not admission.gated:
                self.state.slot = None
                return True
            slot.cap, slot.gate = admission.cap, admission.gate
        if not slot.admitted:
            status = self.state.status
            before, status.message = (
                status.message,
                f"waiting for a slot of provider {slot.gate_name}: at most {slot.cap} of its agents run "
                "at once, first come, first served",
            )
            self.publish(None)
            await workflow.wait_condition(lambda: slot.admitted or self._interrupted())
            status.message = before
        if not slot.admitted:
            await self._release_slot()
            return False
        return True

    def _admit_request(self, provider: str) -> AdmitRequest:
        """What the gate is asked: a pod's agent goes with its own secret (a local one, the worker's key)."""
        asking = AdmitRequest(provider=provider, polecat=workflow.info().workflow_id)
        kubernetes = self.polecat.spec.kubernetes
        if self.polecat.spec.execution_mode == "kubernetes" and kubernetes is not None:
            asking.in_pod = True
            key, login = kubernetes.api_key_secret_ref, kubernetes.claude_creds_secret_ref
            if key is not None:
                asking.key_ref = f"{self.polecat.namespace}/{key.name}/{key.key}"
            elif login is not None:
                asking.key_ref = f"{self.polecat.namespace}/{login.name}"
        return asking

    async def _release_slot(self) -> None:
        """The slot back to the gate, if it holds one (or waits for one)."""
        slot, self.state.slot = self.state.slot, None
        if slot is not None:
            await self._give_back(slot.gate_name)

    async def _give_back(self, gate: str) -> None:
        with contextlib.suppress(FailureError):  # no gate any more: nothing to give back
            await _gate(gate).signal(ProviderWorkflow.release, workflow.info().workflow_id)

    async def _tell_limited(self, slot: ProviderSlot, limit: RateLimit) -> None:
        notice = LimitNotice(polecat=workflow.info().workflow_id, until=limit.until)
        with contextlib.suppress(FailureError):
            await _gate(slot.gate_name).signal(ProviderWorkflow.limited, notice)

    # --- the host of its local work -------------------------------------------

    async def _on_host(
        self, activity: Callable[..., Awaitable[Result]], *args: Any, **options: Any
    ) -> Result:
        """`activity` on the polecat's host (its rig's, until its worktree is made).

        While no worker of that host takes it, the status says so and the work waits for the
        host: it never runs on another.
        """
        while True:
            try:
                result: Result = await workflow.execute_activity(
                    activity, *args, **options, **on_host(self._host(), self._waits())
                )
            except ActivityError as error:
                if not not_taken(error):
                    raise
                self._host_lost()
                continue
            self._host_back()
            return result

    def _host(self) -> str | None:
        """Where its local work runs: its worktree's host; before it has one, its rig's."""
        return self.state.host or self.rig.host

    def _waits(self) -> int:
        return self.state.host_lost.waits if self.state.host_lost else 0

    def _pin(self, host: str | None) -> None:
        """From now on its local work goes to `host`, where its worktree is."""
        if host is None or host == self.state.host:
            return
        self.state.host = self.state.status.host = host
        workflow.upsert_search_attributes([attributes.HOST.value_set(host)])

    def _host_lost(self) -> None:
        status, lost = self.state.status, self.state.host_lost
        if lost is None:  # its first try waited wait_of(0) in the host's queue
            lost = self.state.host_lost = HostLost(since=workflow.now() - wait_of(0), message=status.message)
        lost.waits += 1
        status.message = host_gone(self._host() or "", lost.since, workflow.now())
        first = lost.waits == 1
        status.conditions = set_condition(
            status.conditions, "HostAvailable", "False", "HostLost", status.message, workflow.now()
        )
        self.publish(EventNote(reason="HostLost", message=status.message, type="Warning") if first else None)

    def _host_back(self) -> None:
        lost = self.state.host_lost
        if lost is None:
            return
        self.state.host_lost = None
        status = self.state.status
        back = f"host {self._host()} is back"
        status.message = lost.message
        status.conditions = set_condition(
            status.conditions, "HostAvailable", "True", "HostBack", back, workflow.now()
        )
        self.publish(EventNote(reason="HostBack", message=back))

    # --- the one place a phase changes --------------------------------------

    def _fail(self, error: ActivityError) -> None:
        """Failed, with the activity's error type as the reason and its message."""
        self._set_phase("Failed", reason_of(error) or "ActivityFailed", message_of(error))

    def _set_phase(self, phase: PolecatPhase, reason: str, message: str) -> None:
        status = self.state.status
        if phase != status.phase and phase not in TRANSITIONS[status.phase]:
            raise ApplicationError(
                f"illegal transition {status.phase} -> {phase}", type="BugIllegalTransition"
            )
        now = workflow.now()
        began = status.last_restart_time or status.start_time
        if status.phase == "Working" and phase != "Working" and began is not None:  # a run's end
            run = workflow.metric_meter().create_histogram_timedelta(
                "gastown_agent_run", "An agent's run, from its start to its end.", unit="duration"
            )
            spec = self.polecat.spec
            run.record(now - began, {"agent": spec.agent, "rig": spec.rig, "outcome": phase})
        status.message = message
        status.current_state = (
            "Working" if phase == "Working" else "Terminated" if phase == "Terminated" else "Idle"
        )
        if phase in FINAL_PHASES and status.completion_time is None:
            status.completion_time = now
        conditions = status.conditions
        ready = phase in ("Idle", "Working", "Succeeded")
        conditions = set_condition(conditions, "Ready", "True" if ready else "False", reason, message, now)
        working = phase == "Working"
        conditions = set_condition(
            conditions, "Working", "True" if working else "False", reason, message, now
        )
        failed = phase == "Failed"
        conditions = set_condition(
            conditions, "Failed", "True" if failed else "False", reason, message if failed else "", now
        )
        if phase == "Terminated":  # how it was ended, alike in every client
            conditions = set_condition(conditions, "Terminated", "True", reason, message, now)
        status.conditions = conditions
        if phase == "Succeeded" or phase == "Failed" or phase == "Terminated":  # its run's follow-ups
            follow_ups.conclude(self.state.follow_ups, status, phase, message)
        self.set_phase(
            phase, EventNote(reason=reason, message=message, type="Warning" if failed else "Normal")
        )


def _gate(gate: str) -> workflow.ExternalWorkflowHandle[ProviderWorkflow]:
    """A provider's gate (`workflows.provider`), by its name (`contracts.providers.gate_name`)."""
    return workflow.get_external_workflow_handle_for(
        ProviderWorkflow.run, attributes.workflow_id("Provider", None, gate)
    )


def _limits(budget: Budget) -> str:
    limits = [format_cost(budget.max_cost_usd)] if budget.max_cost_usd is not None else []
    limits += [f"{budget.max_tokens:,} tokens"] if budget.max_tokens is not None else []
    return " and ".join(limits)


def _spent(usage: Usage | None) -> str:
    return "nothing" if usage is None else f"{usage.cost}, {usage.new_tokens:,} tokens"
