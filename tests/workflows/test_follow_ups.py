"""Follow-ups (nudges) to a polecat's agent, on the time-skipping test server with fake activities."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError

from crds.polecat import NUDGE_ANNOTATION, PolecatStatus
from tests.workflows.conftest import status_when
from tests.workflows.test_polecat_workflow import FakeActivities, a_polecat, phase_of
from tests.workflows.test_polecat_workflow import run as run  # the fixture
from workflows.follow_ups import KEPT
from workflows.polecat import PolecatWorkflow


async def conversation_when(handle: Any, holds: Any, what: str) -> PolecatStatus:
    return await status_when(handle, PolecatStatus, holds, what)


async def test_a_succeeded_polecat_is_resumed_in_its_session_with_the_follow_up(run: Any) -> None:
    """Succeeded -> Working: a new run of the agent continuing its session, the follow-up in its
    prompt; it ends Succeeded again, the follow-up's outcome with it."""
    fakes = FakeActivities(exit_code=0)
    handle = await run(fakes, a_polecat())
    await phase_of(handle, "Succeeded")

    what = await handle.execute_update(PolecatWorkflow.follow_up, "  also add tests  ")

    assert what == "the agent's session is resumed with it"
    status = await conversation_when(
        handle, lambda s: s.follow_ups == 1 and s.phase == "Succeeded", "the follow-up's run to end"
    )
    second = fakes.launched[1]
    assert (second.follow_up, second.resume) == ("also add tests", True)
    assert fakes.calls.count("publish_branch") == 2  # its new commits, for the refinery
    (entry,) = status.conversation
    assert (entry.message, entry.outcome, entry.source) == ("also add tests", "Succeeded", "cli")
    assert "done: branch polecat/nux" in entry.detail


async def test_a_follow_up_to_a_working_agent_waits_for_its_run_to_end(run: Any) -> None:
    """While the agent works the follow-up is queued; when the run ends (Succeeded) the agent is
    resumed with it."""
    fakes = FakeActivities(exit_code=None)
    handle = await run(fakes, a_polecat())
    await phase_of(handle, "Working")

    what = await handle.execute_update(PolecatWorkflow.follow_up, "use the new API")
    assert what == "queued: the agent gets it when its current run ends"
    queued = await conversation_when(handle, lambda s: bool(s.conversation), "the follow-up queued")
    assert queued.conversation[0].outcome == "Queued" and len(fakes.launched) == 1

    fakes.exit_code = 0
    resumed = await conversation_when(
        handle, lambda s: s.follow_ups == 1 and s.phase == "Succeeded", "the follow-up's run to end"
    )
    assert fakes.launched[1].follow_up == "use the new API"
    assert resumed.conversation[0].outcome == "Succeeded"


async def test_the_nudge_signal_and_annotation_are_follow_ups_too(run: Any) -> None:
    """The `nudge` signal (Temporal UI) and the nudge annotation (kubectl annotate, through an
    apply) each queue one; an annotation is taken once per value, and an apply that keeps it does
    not send it again."""
    fakes = FakeActivities(exit_code=None)
    handle = await run(fakes, a_polecat())
    await phase_of(handle, "Working")
    await handle.signal(PolecatWorkflow.nudge, "from the UI")
    annotated = a_polecat()
    annotated.metadata.annotations[NUDGE_ANNOTATION] = "from kubectl"
    await handle.execute_update(PolecatWorkflow.apply, annotated)
    await handle.execute_update(PolecatWorkflow.apply, annotated)  # a resync: the same value

    status = await conversation_when(handle, lambda s: len(s.conversation) == 2, "two follow-ups")
    assert [(e.message, e.source) for e in status.conversation] == [
        ("from the UI", "signal"),
        ("from kubectl", "annotation"),
    ]
    fakes.exit_code = 0
    await conversation_when(
        handle, lambda s: s.follow_ups == 1 and s.phase == "Succeeded", "one run for both"
    )
    assert fakes.launched[1].follow_up == "1. from the UI\n\n2. from kubectl"


@pytest.mark.parametrize(
    ("message", "refusal"),
    [("", "message: String should have at least 1 character"), ("x" * 4001, "at most 4000 characters")],
)
async def test_a_bad_follow_up_is_refused_naming_the_rule(run: Any, message: str, refusal: str) -> None:
    """Empty or too long: the update is refused with the field and the rule, and nothing is queued."""
    handle = await run(FakeActivities(exit_code=0), a_polecat())
    await phase_of(handle, "Succeeded")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(PolecatWorkflow.follow_up, message)
    assert refusal in str(refused.value.cause)
    status = await phase_of(handle, "Succeeded")
    assert status.conversation == [] and status.follow_ups == 0


async def test_a_terminated_polecat_takes_no_follow_up(run: Any) -> None:
    """The update says why; the signal's refusal is in the conversation, as Refused."""
    handle = await run(FakeActivities(exit_code=None), a_polecat())
    await phase_of(handle, "Working")
    await handle.signal(PolecatWorkflow.terminate)
    await phase_of(handle, "Terminated")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(PolecatWorkflow.follow_up, "one more thing")
    assert "nudge refused: the polecat is terminated" in str(refused.value.cause)
    await handle.signal(PolecatWorkflow.nudge, "one more thing")
    status = await conversation_when(handle, lambda s: bool(s.conversation), "the refusal recorded")
    assert (status.conversation[0].outcome, status.phase) == ("Refused", "Terminated")


async def test_the_conversation_keeps_the_latest_and_counts_the_rest(run: Any) -> None:
    """Beyond the latest KEPT follow-ups the status keeps a count; a long text is cut for the
    status, and the agent gets it whole."""
    fakes = FakeActivities(exit_code=None)
    handle = await run(fakes, a_polecat())
    await phase_of(handle, "Working")
    long_text = "y" * 1000
    await handle.execute_update(PolecatWorkflow.follow_up, long_text)
    for n in range(KEPT + 4):  # refused beyond ten waiting: those count in the conversation too
        await handle.signal(PolecatWorkflow.nudge, f"note {n}")
    status = await conversation_when(handle, lambda s: s.earlier_follow_ups == 5, "the oldest counted")
    assert len(status.conversation) == KEPT
    # Ten wait (the text and notes 0-8), the rest refused; the status dropped the first five.
    assert [e.outcome for e in status.conversation].count("Queued") == 5
    assert status.conversation[-1].outcome == "Refused"
    fakes.exit_code = 0
    await conversation_when(handle, lambda s: s.follow_ups == 1 and s.phase == "Succeeded", "the run")
    assert fakes.launched[1].follow_up is not None and long_text in fakes.launched[1].follow_up
