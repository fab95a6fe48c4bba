"""The Witness workflow's policy, on the time-skipping test server: thresholds, grace, actions, alerts.

The rig's polecats are fake Polecat workflows (same ids and `remedy` signal
as the real ones) that keep a clock of their last progress; the fake
`health` activities read them as the real ones read memos and files.
Notifications are recorded. Checks are driven by running the real
`WitnessTick` workflow, as the Schedule would, and waiting for its answer.
No tmux, git or network here (tests/integration/test_witness.py does that).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# This module defines a workflow (the fake Polecat): the sandbox re-imports it, so what it uses is
# passed through, as in the workflows' own modules.
with workflow.unsafe.imports_passed_through():
    from activities.health import report
    from contracts import attributes, health, notify, schedules
    from contracts.health import HealthReport, HealthRequest, PolecatHealth
    from contracts.notify import MailMessage, SlackMessage
    from contracts.schedules import ScheduleRequest
    from crds import Witness
    from crds.polecat import MAX_RESTARTS
    from crds.witness import WitnessStatus, webhook_reference
    from tests.helpers import parsed, wait_until
    from tests.workflows.conftest import rolled_over_and_replays
    from workflows.polecat_models import Remedy
    from workflows.witness import TICK, WitnessInput, WitnessTickWorkflow, WitnessWorkflow

WEBHOOK = "https://hooks.slack.example/services/T000/B000/secret"


class FakePolecatState(BaseModel):
    health: PolecatHealth
    last_progress: datetime | None = None
    remedies: list[Remedy] = Field(default_factory=list)  # every order received, stale ones too


@workflow.defn(name="Polecat")
class FakePolecat:
    """A polecat that only keeps its health: phase, attempt, and when it last made progress."""

    @workflow.init
    def __init__(self, state: FakePolecatState) -> None:
        self.state = state

    @workflow.run
    async def run(self, state: FakePolecatState) -> None:
        if self.state.health.working_since is None:
            self.state.health.working_since = self.state.last_progress = workflow.now()
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def remedy(self, remedy: Remedy) -> None:
        """What the real polecat does with an order, in short: only one for this run and attempt."""
        self.state.remedies.append(remedy)
        health = self.state.health
        if remedy.uid != health.uid or remedy.attempt != health.restarts:
            return
        if remedy.action == "restart":
            health.restarts += 1
            health.phase, health.reason = "Working", "AgentRunning"
            health.working_since = self.state.last_progress = workflow.now()
        elif remedy.action == "fail":
            health.phase, health.reason, health.completion_time = "Failed", remedy.reason, workflow.now()
        else:
            health.phase = "Terminated"

    @workflow.signal
    def progress(self) -> None:
        self.state.last_progress = workflow.now()

    @workflow.signal
    def fail(self, reason: str) -> None:
        health = self.state.health
        health.phase, health.reason, health.completion_time = "Failed", reason, workflow.now()
        health.message = "agent exited with code 1"

    @workflow.query
    def seen(self) -> FakePolecatState:
        return self.state


@dataclass
class Town:
    """The test's rig: its fake polecats (by key), what the Witness sent, and the recheck's hook."""

    env: WorkflowEnvironment
    queue: str
    namespace: str
    keys: list[str] = field(default_factory=list)
    slack: list[SlackMessage] = field(default_factory=list)
    mail: list[MailMessage] = field(default_factory=list)
    rechecks: list[list[str]] = field(default_factory=list)
    progress_on_recheck: bool = False

    @property
    def client(self) -> Client:
        return self.env.client

    async def add(
        self, name: str, phase: str = "Working", uid: str | None = None
    ) -> WorkflowHandle[Any, Any]:
        key = f"{self.namespace}/{name}"
        health = PolecatHealth(
            namespace=self.namespace,
            name=name,
            uid=uid or uuid.uuid4().hex,
            phase=phase,
            bead_id=f"gt-{name}",
        )
        handle = await self.client.start_workflow(
            "Polecat", FakePolecatState(health=health), id=f"polecat/{key}", task_queue=self.queue
        )
        if key not in self.keys:
            self.keys.append(key)
        # Answered once its first task has run: the test server skips no time while one is outstanding.
        await self.state(name)
        return handle

    def polecat(self, name: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(f"polecat/{self.namespace}/{name}")

    async def state(self, name: str) -> FakePolecatState:
        state: FakePolecatState = await self.polecat(name).query("seen", result_type=FakePolecatState)
        return state

    async def _read(self, key: str) -> PolecatHealth | None:
        state = await self.state(key.split("/", 1)[1])
        health = state.health
        if health.phase == "Working" and state.last_progress is not None:
            now = activity.info().current_attempt_scheduled_time
            health.quiet_for = (now - state.last_progress).total_seconds()
        return health

    @activity.defn(name=health.OBSERVE)
    async def observe(self, request: HealthRequest) -> HealthReport:
        found = [await self._read(key) for key in self.keys]
        return report([health for health in found if health], request)

    @activity.defn(name=health.RECHECK)
    async def recheck(self, keys: list[str]) -> list[PolecatHealth]:
        self.rechecks.append(keys)
        if self.progress_on_recheck:
            for key in keys:
                await self.polecat(key.split("/", 1)[1]).signal("progress")
        return [health for health in [await self._read(key) for key in keys] if health]

    @activity.defn(name=notify.SLACK)
    async def notify_slack(self, message: SlackMessage) -> None:
        self.slack.append(message)

    @activity.defn(name=notify.EMAIL)
    async def notify_email(self, message: MailMessage) -> None:
        self.mail.append(message)

    @activity.defn(name=schedules.ENSURE)
    async def ensure(self, request: ScheduleRequest) -> None:
        pass

    @activity.defn(name=schedules.DELETE)
    async def delete(self, schedule_id: str) -> None:
        pass

    def activities(self) -> list[Any]:
        return [self.observe, self.recheck, self.notify_slack, self.notify_email, self.ensure, self.delete]


@pytest.fixture
async def town(own_clock: WorkflowEnvironment) -> AsyncIterator[Town]:
    time_skipping = own_clock
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    town = Town(time_skipping, queue, namespace=f"t{uuid.uuid4().hex[:8]}")
    async with Worker(
        time_skipping.client,
        task_queue=queue,
        workflows=[WitnessWorkflow, WitnessTickWorkflow, FakePolecat],
        activities=town.activities(),
    ):
        yield town


def witness(namespace: str, **spec: Any) -> Witness:
    notifications = {
        "slack": {"webhookURL": WEBHOOK, "channel": "#town"},
        "email": {"to": "mayor@town.example"},
    }
    manifest = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Witness",
        "metadata": {"name": "witness", "namespace": namespace, "uid": "w-1"},
        "spec": {"rigRef": "athena", "notifications": notifications, **spec},
    }
    return parsed(Witness, manifest).without_secrets()


async def start(town: Town, history_limit: int = 4000, **spec: Any) -> WorkflowHandle[Any, Any]:
    """The Witness, after its first check."""
    handle = await town.client.start_workflow(
        WitnessWorkflow.run,
        WitnessInput(witness=witness(town.namespace, **spec), history_limit=history_limit),
        id=f"witness/{town.namespace}/witness",
        task_queue=town.queue,
    )
    await check(town, handle)
    return handle


async def check(town: Town, witness: WitnessHandle) -> WitnessStatus:
    """One scheduled check, as the Schedule runs it; the status after it.

    The clock moves only when a test sleeps: waiting for the check does not skip time.
    """
    with town.env.auto_time_skipping_disabled():
        await town.client.execute_workflow(
            TICK,
            witness.id,
            id=f"witness-tick/{uuid.uuid4().hex[:8]}",
            task_queue=town.queue,
            result_type=str,
        )

    # From the memo, as `gastown get` reads it: a query sent while the workflow continues as new may hang.
    # (The test server does not carry a memo into a new run: the new run's first task writes it.)
    async def published() -> dict[str, Any] | None:
        return (await (await witness.describe()).memo()).get(attributes.MEMO_STATUS)

    return WitnessStatus.model_validate(await wait_until(published, "the witness's status in its memo"))


WitnessHandle = WorkflowHandle[Any, Any]


async def advance(town: Town, span: timedelta) -> None:
    """Move the server's clock by `span`, with nothing else happening."""
    await town.env.sleep(span)


def alerts(status: WitnessStatus) -> list[tuple[str, str]]:
    return [(alert.polecat.split("/", 1)[1], alert.type) for alert in status.alerts]


async def test_a_quiet_polecat_is_stuck_once_the_threshold_passes(town: Town) -> None:
    """Quiet for less than stuckThreshold is healthy; past it, the polecat is Stuck, `since` its last progress."""
    await town.add("nux")
    handle = await start(town, stuckThreshold="10m", startupGrace="0s")
    first = await check(town, handle)  # the second
    assert (first.phase, first.polecats_monitored, first.polecats_healthy) == ("Healthy", 1, 1)
    started = (await town.state("nux")).last_progress
    await advance(town, timedelta(minutes=9))
    assert (await check(town, handle)).polecats_stuck == 0
    await advance(town, timedelta(minutes=2))
    status = await check(town, handle)
    assert (status.phase, status.polecats_stuck, status.polecats_healthy) == ("Degraded", 1, 0)
    assert alerts(status) == [("nux", "Stuck")]
    assert started is not None and abs((status.alerts[0].since - started).total_seconds()) < 5
    assert "no progress for 11m" in status.alerts[0].message


async def test_a_fresh_polecat_gets_its_startup_grace(town: Town) -> None:
    """With a 1m threshold and 5m grace, a polecat silent since it started is not stuck until 5m."""
    await town.add("slit")
    handle = await start(town, stuckThreshold="1m", startupGrace="5m")
    await advance(town, timedelta(minutes=3))
    assert (await check(town, handle)).polecats_stuck == 0
    await advance(town, timedelta(minutes=2, seconds=30))
    assert alerts(await check(town, handle)) == [("slit", "Stuck")]


async def test_one_notification_per_transition(town: Town) -> None:
    """Stuck, Recovered and Failed are each told once, however many checks see them, across new runs too."""
    await town.add("nux")
    handle = await start(town, history_limit=60, stuckThreshold="10m", startupGrace="0s")
    first_run = (await handle.describe()).run_id
    await advance(town, timedelta(minutes=11))
    for _ in range(4):
        assert alerts(await check(town, handle)) == [("nux", "Stuck")]
    await town.polecat("nux").signal("progress")
    for _ in range(3):
        assert alerts(await check(town, handle)) == [("nux", "Recovered")]
    await town.polecat("nux").signal("fail", "AgentFailed")
    for _ in range(4):
        status = await check(town, handle)
    assert alerts(status) == [("nux", "Failed")]
    assert (status.polecats_failed, status.phase) == (1, "Degraded")
    told = [message.text.splitlines()[1].split(":")[0] for message in town.slack]
    assert told == ["Stuck", "Recovered", "Failed"]
    assert [mail.subject.rsplit(" ", 1)[1] for mail in town.mail] == ["Stuck", "Recovered", "Failed"]
    assert all(message.reference == webhook_reference(WEBHOOK) for message in town.slack)
    assert all(message.channel == "#town" for message in town.slack)
    await rolled_over_and_replays(town.client, handle.id, WitnessWorkflow, first_run)


async def test_restarts_are_capped_then_the_polecat_is_left_failed(town: Town) -> None:
    """onStuck restart: each stuck attempt is restarted, up to 3 times; then it is failed, and told so."""
    await town.add("nux")
    handle = await start(
        town, stuckThreshold="10m", startupGrace="0s", actions={"onStuck": "restart", "onFailed": "restart"}
    )
    for attempt in range(1, MAX_RESTARTS + 1):
        await advance(town, timedelta(minutes=11))
        status = await check(town, handle)
        assert f"restarting it ({attempt} of {MAX_RESTARTS})" in status.alerts[0].message
        assert (await town.state("nux")).health.restarts == attempt
        assert alerts(await check(town, handle)) == [("nux", "Recovered")]  # the new attempt is fresh
    await advance(town, timedelta(minutes=11))
    status = await check(town, handle)
    assert "giving up" in status.alerts[0].message
    assert (await town.state("nux")).health.phase == "Failed"
    status = await check(town, handle)
    assert alerts(status) == [("nux", "Failed")]
    assert "not restarted: restarted 3 times already" in status.alerts[0].message
    remedies = (await town.state("nux")).remedies
    assert [r.action for r in remedies] == ["restart", "restart", "restart", "fail"]
    assert [r.attempt for r in remedies] == [0, 1, 2, 3]


async def test_a_polecat_is_rechecked_right_before_an_action(town: Town) -> None:
    """A polecat that looked stuck but shows progress when read again is neither restarted nor alerted."""
    await town.add("nux")
    handle = await start(town, stuckThreshold="10m", startupGrace="0s", actions={"onStuck": "terminate"})
    await advance(town, timedelta(minutes=11))
    town.progress_on_recheck = True
    status = await check(town, handle)
    assert town.rechecks == [[f"{town.namespace}/nux"]]
    assert (status.polecats_stuck, status.alerts) == (0, [])
    assert (await town.state("nux")).remedies == []
    town.progress_on_recheck = False
    await advance(town, timedelta(minutes=11))
    await check(town, handle)
    assert (await town.state("nux")).health.phase == "Terminated"


async def test_a_closed_bead_is_never_restarted(town: Town) -> None:
    """onFailed restart leaves a polecat whose bead is closed Failed, and says why."""
    await town.add("toast")
    await town.polecat("toast").signal("fail", "BeadClosed")
    handle = await start(town, actions={"onFailed": "restart"})
    status = await check(town, handle)
    assert alerts(status) == [("toast", "Failed")]
    assert "not restarted: BeadClosed" in status.alerts[0].message
    assert (await town.state("toast")).remedies == []


async def test_an_alert_belongs_to_one_run_of_a_polecat(town: Town) -> None:
    """A polecat re-created under the same name starts with a clean slate: no inherited alert or order."""
    await town.add("nux", uid="first-run")
    handle = await start(town, stuckThreshold="10m", startupGrace="0s", actions={"onFailed": "restart"})
    await town.polecat("nux").signal("fail", "AgentFailed")
    assert alerts(await check(town, handle)) == [("nux", "Failed")]
    first_orders = (await town.state("nux")).remedies
    assert [(r.uid, r.attempt) for r in first_orders] == [("first-run", 0)]
    await town.polecat("nux").terminate("deleted")
    await town.add("nux", uid="second-run")
    status = await check(town, handle)
    assert (status.alerts, status.polecats_healthy) == ([], 1)
    assert (await town.state("nux")).remedies == []
