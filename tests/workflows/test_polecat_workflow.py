"""The Polecat workflow's policy, on the time-skipping test server.

Activities are replaced by fakes with the same names that record their calls
and let each test decide how the agent ends; no tmux or git runs here (the
integration tests do that for real).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from contracts import attributes, git, providers, tmux
from contracts import beads as beads_contract
from contracts.beads import Bead, BeadLookup
from contracts.git import BranchRequest, BranchResult, RigCheck, Worktree, WorktreeRequest
from contracts.providers import Admission, AdmitRequest
from contracts.tmux import AgentExit, AgentLaunch, AgentSession, RateLimit
from crds.beadstore import BeadSource
from crds.polecat import Polecat, PolecatStatus
from crds.rig import RigSpec
from tests.helpers import polecat, rig
from tests.workflows.conftest import Starter, status_when
from workflows.polecat import PolecatWorkflow
from workflows.polecat_models import PolecatInput


@dataclass
class FakeActivities:
    """Stand-ins for the git and tmux activities; `calls` records what ran."""

    exit_code: int | None = 0  # None: the agent runs until the test says otherwise
    warnings: list[str] = field(default_factory=list)
    fail_prepare: str | None = None
    beads: list[Bead] | None = None  # what the rig's BeadStore holds; None: the rig has none
    rate_limited_until: datetime | None = None  # the first watch finds the agent rate limited until then
    launched: list[AgentLaunch] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @activity.defn(name=git.PREPARE_WORKTREE)
    async def prepare_worktree(self, request: WorktreeRequest) -> Worktree:
        self.calls.append("prepare_worktree")
        if self.fail_prepare:
            raise ApplicationError(self.fail_prepare, type="RigNotReady", non_retryable=True)
        return Worktree(path=f"/work/{request.polecat}", branch=request.branch, base="origin/main")

    @activity.defn(name=tmux.START_AGENT)
    async def start_agent(self, launch: AgentLaunch) -> AgentSession:
        self.calls.append("start_agent")
        self.launched.append(launch)
        return AgentSession(
            session=f"gt-{launch.polecat.name}", log_file="/logs/x.log", warnings=self.warnings
        )

    @activity.defn(name=tmux.WATCH_AGENT)
    async def watch_agent(self, session: AgentSession) -> AgentExit:
        self.calls.append("watch_agent")
        if self.rate_limited_until is not None:
            until, self.rate_limited_until = self.rate_limited_until, None
            limit = RateLimit(provider="anthropic", until=until, status=429)
            return AgentExit(exit_code=None, tail="", rate_limited=limit)
        try:
            while self.exit_code is None:
                activity.heartbeat()
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.calls.append("watch_cancelled")
            raise
        return AgentExit(exit_code=self.exit_code, tail="line 1\nboom: it broke")

    @activity.defn(name=tmux.STOP_AGENT)
    async def stop_agent(self, session: AgentSession) -> None:
        self.calls.append("stop_agent")

    @activity.defn(name=git.PUBLISH_BRANCH)
    async def publish_branch(self, request: BranchRequest) -> BranchResult:
        self.calls.append("publish_branch")
        return BranchResult(branch=request.branch, commit="c0ffee" * 6 + "abcd", pushed=True)

    @activity.defn(name=git.CHECK_RIG)
    async def check_rig(self, spec: RigSpec) -> RigCheck:
        return RigCheck(ready=True, reason="RigReady", message="ready")

    @activity.defn(name=providers.ADMIT)
    async def admit(self, request: AdmitRequest) -> Admission:
        return Admission(gated=False)  # no provider is gated here (test_provider_workflow.py gates them)

    @activity.defn(name=beads_contract.FIND)
    async def find_beads(self, lookup: BeadLookup) -> list[Bead]:
        return [bead for bead in self.beads or [] if bead.id in lookup.bead_ids]

    def all(self) -> list[Any]:
        return [
            self.find_beads,
            self.admit,
            self.prepare_worktree,
            self.start_agent,
            self.watch_agent,
            self.stop_agent,
            self.publish_branch,
            self.check_rig,
        ]


RIG = rig(
    {"apiVersion": "gastown.gastown.io/v1alpha1", "kind": "Rig", "metadata": {"name": "athena"}, "spec": {}}
)


def a_polecat(desired: str = "Working", **spec: Any) -> Polecat:
    body = {"rig": "athena", "desiredState": desired, "beadID": "at-1", **spec}
    manifest = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "nux", "namespace": "default", "uid": "1234abcd-0000"},
        "spec": body,
    }
    return polecat(manifest)


@pytest.fixture
def run(start_workflow: Starter) -> Any:
    """Start a polecat workflow on a worker with the given fakes; yields a starter."""
    return polecat_starter(start_workflow)


@pytest.fixture
def run_on_own_clock(start_on_own_clock: Starter) -> Any:
    return polecat_starter(start_on_own_clock)


def polecat_starter(start_workflow: Starter) -> Any:

    async def start(
        fakes: FakeActivities, resource: Polecat, history_limit: int = 4000
    ) -> WorkflowHandle[Any, Any]:
        return await start_workflow(
            PolecatWorkflow,
            PolecatWorkflow.run,
            PolecatInput(
                polecat=resource,
                rig=RIG,
                bead_source=None if fakes.beads is None else BeadSource(type="jsonl", path="/beads.jsonl"),
                history_limit=history_limit,
            ),
            fakes.all(),
            "polecat/default",
            attributes.initial("Polecat", "default", "athena", "at-1", "Pending"),
        )

    return start


async def phase_of(handle: WorkflowHandle[Any, Any], phase: str) -> PolecatStatus:
    """The polecat's status once its phase is `phase`."""

    return await status_when(handle, PolecatStatus, lambda s: s.phase == phase, f"phase {phase}")


def condition(status: PolecatStatus, type_: str) -> tuple[str, str]:
    found = next(c for c in status.conditions if c.type == type_)
    return found.status, found.reason


async def test_agent_exit_zero_succeeds_with_branch_and_commit(run: Any) -> None:
    """An agent that exits 0 ends Succeeded; the status names the branch and its head commit."""
    fakes = FakeActivities(exit_code=0)
    handle = await run(fakes, a_polecat())
    status = await phase_of(handle, "Succeeded")
    assert status.branch == "polecat/nux"
    assert status.commit and status.commit.startswith("c0ffee")
    assert status.commit[:12] in status.message
    assert status.exit_code == 0
    assert status.tmux_session == "gt-nux"
    assert status.start_time is not None and status.completion_time is not None
    assert status.current_state == "Idle"
    assert condition(status, "Ready") == ("True", "AgentSucceeded")
    assert condition(status, "Working")[0] == "False"
    assert condition(status, "Failed")[0] == "False"
    assert fakes.calls == ["prepare_worktree", "start_agent", "watch_agent", "stop_agent", "publish_branch"]


async def test_agent_is_given_the_bead_text_from_the_bead_store(run: Any) -> None:
    """With a BeadStore on the rig, the agent's launch carries the bead's title, description and criteria."""
    bead = Bead(id="at-1", title="Fix the pump", description="It leaks.", acceptance_criteria="No leak.")
    fakes = FakeActivities(beads=[bead])
    handle = await run(fakes, a_polecat())
    await phase_of(handle, "Succeeded")
    assert fakes.launched[0].bead == bead


async def test_closed_bead_is_never_worked(run: Any) -> None:
    """A polecat whose bead is already closed fails with BeadClosed and starts no agent."""
    fakes = FakeActivities(beads=[Bead(id="at-1", title="done already", status="closed")])
    handle = await run(fakes, a_polecat())
    status = await phase_of(handle, "Failed")
    assert "closed" in status.message
    assert any(condition.reason == "BeadClosed" for condition in status.conditions)
    assert "start_agent" not in fakes.calls and "prepare_worktree" not in fakes.calls


async def test_bead_missing_from_the_store_fails_clearly(run: Any) -> None:
    """A bead the rig's BeadStore does not hold: Failed with BeadNotFound, no agent."""
    handle = await run(FakeActivities(beads=[]), a_polecat())
    status = await phase_of(handle, "Failed")
    assert status.message == "bead at-1 is not in the rig's BeadStore"


async def test_agent_exit_nonzero_fails_with_code_and_output(run: Any) -> None:
    """A non-zero exit ends Failed, with the exit code and the last lines of output in the message."""
    handle = await run(FakeActivities(exit_code=3), a_polecat())
    status = await phase_of(handle, "Failed")
    assert "exited with code 3" in status.message
    assert "boom: it broke" in status.message
    assert status.exit_code == 3
    assert condition(status, "Failed") == ("True", "AgentFailed")
    assert condition(status, "Ready")[0] == "False"


async def test_unsupported_settings_are_reported_while_working(run: Any) -> None:
    """A setting the agent cannot honour is named in the status message, not dropped silently."""
    warning = "agentConfig.temperature is not supported by aider and was not applied"
    handle = await run(FakeActivities(exit_code=None, warnings=[warning]), a_polecat())
    status = await phase_of(handle, "Working")
    assert warning in status.message
    assert status.current_state == "Working"
    assert condition(status, "Working") == ("True", "AgentRunning")
    await handle.signal(PolecatWorkflow.terminate)
    await phase_of(handle, "Terminated")


async def test_terminate_while_working(run: Any) -> None:
    """The terminate signal (as the Temporal UI sends it) stops the agent and ends Terminated, its
    condition naming the signal; an apply of the same spec (Working) right after does not undo it."""
    fakes = FakeActivities(exit_code=None)
    handle = await run(fakes, a_polecat())
    await phase_of(handle, "Working")
    await handle.signal("terminate")
    await handle.execute_update(PolecatWorkflow.apply, a_polecat())
    status = await phase_of(handle, "Terminated")
    assert status.current_state == "Terminated"
    assert condition(status, "Terminated") == ("True", "TerminateSignal")
    assert "stop_agent" in fakes.calls
    assert "publish_branch" not in fakes.calls


async def test_broken_rig_fails_with_reason(run: Any) -> None:
    """A worktree that cannot be made fails the polecat with the activity's reason and message."""
    handle = await run(
        FakeActivities(fail_prepare="spec.localPath /nope is not a git repository"), a_polecat()
    )
    status = await phase_of(handle, "Failed")
    assert condition(status, "Failed") == ("True", "RigNotReady")
    assert "/nope is not a git repository" in status.message


async def test_idle_then_working(run: Any) -> None:
    """An Idle polecat waits; applying desiredState Working starts its agent."""
    fakes = FakeActivities(exit_code=0)
    handle = await run(fakes, a_polecat("Idle"))
    status = await phase_of(handle, "Idle")
    assert fakes.calls == []
    assert await handle.execute_update(PolecatWorkflow.apply, a_polecat("Idle")) == "created"
    assert await handle.execute_update(PolecatWorkflow.apply, a_polecat("Idle")) == "unchanged"
    assert await handle.execute_update(PolecatWorkflow.apply, a_polecat("Working")) == "configured"
    status = await phase_of(handle, "Succeeded")
    assert status.exit_code == 0


async def test_condition_time_moves_only_with_status(run: Any, time_skipping: WorkflowEnvironment) -> None:
    """Ready stays True from Working to Succeeded, so its lastTransitionTime does not move."""
    fakes = FakeActivities(exit_code=None)
    handle = await run(fakes, a_polecat())
    working = await phase_of(handle, "Working")
    ready_since = next(c for c in working.conditions if c.type == "Ready").last_transition_time
    # Skip the server clock (less than the watcher's heartbeat timeout).
    await time_skipping.sleep(timedelta(seconds=2))
    fakes.exit_code = 0
    done = await phase_of(handle, "Succeeded")
    assert next(c for c in done.conditions if c.type == "Ready").last_transition_time == ready_since
    working_since = next(c for c in working.conditions if c.type == "Working").last_transition_time
    assert next(c for c in done.conditions if c.type == "Working").last_transition_time != working_since


async def test_refused_changes(run: Any) -> None:
    """Changing the rig, or reviving a Terminated polecat, is refused by the update with the rule."""
    handle = await run(FakeActivities(exit_code=None), a_polecat("Idle"))
    await phase_of(handle, "Idle")
    moved = a_polecat("Idle")
    moved.spec.rig = "daedalus"
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(PolecatWorkflow.apply, moved)
    assert "spec.rig: immutable" in str(caught.value.cause)
    await handle.execute_update(PolecatWorkflow.apply, a_polecat("Terminated"))
    await phase_of(handle, "Terminated")
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(PolecatWorkflow.apply, a_polecat("Working"))
    assert "delete it to start again" in str(caught.value.cause)


async def test_delete_stops_agent_and_ends(run: Any) -> None:
    """Deleting a working polecat stops its agent and completes the workflow."""
    fakes = FakeActivities(exit_code=None)
    handle = await run(fakes, a_polecat())
    await phase_of(handle, "Working")
    await handle.signal(PolecatWorkflow.delete)
    result = await handle.result()
    assert fakes.calls[-1] == "stop_agent"
    assert result.phase == "Working"  # deleted, not a phase: the last phase it had


async def test_phase_is_a_search_attribute_and_memo(run: Any, time_skipping: WorkflowEnvironment) -> None:
    """The phase is visible to the Temporal UI as GastownPhase and in the memo `gastown get` reads."""
    handle = await run(FakeActivities(exit_code=0), a_polecat())
    await phase_of(handle, "Succeeded")
    description = await handle.describe()
    assert description.typed_search_attributes.get(attributes.PHASE) == "Succeeded"
    memo = await description.memo()
    assert memo["status"]["phase"] == "Succeeded"


async def test_history_replays_deterministically(run: Any, time_skipping: WorkflowEnvironment) -> None:
    """A finished polecat's history replays on the current code without nondeterminism."""
    handle = await run(FakeActivities(exit_code=3), a_polecat())
    await phase_of(handle, "Failed")
    await handle.signal("terminate")
    await phase_of(handle, "Terminated")
    await handle.signal("delete")
    await handle.result()
    client: Client = time_skipping.client
    history = await client.get_workflow_handle(handle.id).fetch_history()
    await Replayer(workflows=[PolecatWorkflow], data_converter=client.data_converter).replay_workflow(history)


async def test_history_stays_bounded_by_continue_as_new(run: Any, time_skipping: WorkflowEnvironment) -> None:
    """Many updates to a finished polecat roll it into new runs; its status and answers carry over."""
    handle = await run(FakeActivities(exit_code=0), a_polecat(), history_limit=90)
    done = await phase_of(handle, "Succeeded")
    first_run = (await handle.describe()).run_id
    outcomes = [await handle.execute_update(PolecatWorkflow.apply, a_polecat()) for _ in range(25)]
    assert outcomes[0] == "created" and set(outcomes[1:]) == {"unchanged"}
    latest = time_skipping.client.get_workflow_handle(handle.id)
    description = await latest.describe()
    assert description.run_id != first_run
    history = await latest.fetch_history()
    assert len(history.events) < 90
    carried = await latest.query(PolecatWorkflow.status)
    assert (carried.phase, carried.commit, carried.conditions) == (done.phase, done.commit, done.conditions)
    shown = (await description.memo())[attributes.MEMO_STATUS]  # what `gastown get` shows
    assert shown == done.to_wire()


async def test_a_long_rate_limit_parks_the_polecat_and_resumes_it_after_the_reset(
    run_on_own_clock: Any, own_clock: WorkflowEnvironment
) -> None:
    """A limit that resets in three hours: the agent is stopped and the polecat Pending, condition
    RateLimited saying until when, a durable timer of three hours in its history. At the reset the
    agent is resumed (a new attempt in its session) and the polecat goes on to Succeeded."""
    reset = await own_clock.get_current_time() + timedelta(hours=3)
    fakes = FakeActivities(exit_code=0, rate_limited_until=reset)
    handle = await run_on_own_clock(fakes, a_polecat())
    parked = await status_when(
        handle, PolecatStatus, lambda s: any(c.type == "RateLimited" for c in s.conditions), "rate limited"
    )
    assert parked.phase == "Pending" and condition(parked, "RateLimited") == ("True", "RateLimited")
    assert "rate limited by anthropic (HTTP 429) until" in parked.message
    timers = [
        event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        async for event in handle.fetch_history_events()
        if event.HasField("timer_started_event_attributes")
    ]
    assert timers and timedelta(hours=2, minutes=59) < max(timers) <= timedelta(hours=3)
    assert fakes.calls[-1] == "stop_agent"

    await own_clock.sleep(timedelta(hours=3))
    done = await phase_of(handle, "Succeeded")
    assert done.resumes == 1 and done.restarts == 0
    assert condition(done, "RateLimited") == ("False", "RateLimitReset")
    assert [launch.resume for launch in fakes.launched] == [False, True]
