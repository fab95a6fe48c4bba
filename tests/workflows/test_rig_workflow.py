"""The Rig workflow's policy on the time-skipping test server: rechecks, counts, names."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts import attributes, git, status, visibility
from contracts.git import RigCheck
from contracts.rig import NameRequest, RigClaim, RigRelease
from contracts.status import StatusTarget, StatusUpdate
from contracts.visibility import CountWatch
from crds.rig import Rig, RigSpec
from tests.helpers import rig, wait_until
from workflows.rig import RigInput, RigWorkflow


@dataclass
class FakeChecks:
    """The rig's remote answers once `answers` is set; `live` polecats are on the rig."""

    answers: bool = False
    live: int = 0
    calls: list[bool] = field(default_factory=list)

    @activity.defn(name=git.CHECK_RIG)
    async def check_rig(self, spec: RigSpec) -> RigCheck:
        self.calls.append(self.answers)
        if self.answers:
            return RigCheck(ready=True, reason="RigReady", message="remote ready")
        return RigCheck(reason="RemoteUnreachable", message="gitURL x does not answer")

    @activity.defn(name=visibility.WATCH_POLECAT_COUNT)
    async def watch_polecat_count(self, watch: CountWatch) -> int:
        while self.live == watch.seen:
            activity.heartbeat()
            await asyncio.sleep(0.02)
        return self.live

    def all(self) -> list[Any]:
        return [self.check_rig, self.watch_polecat_count]


def a_rig(**spec: object) -> Rig:
    return rig({"apiVersion": "gastown.gastown.io/v1alpha1", "kind": "Rig",
                "metadata": {"name": "athena"}, "spec": {"gitURL": "x", **spec}})  # fmt: skip


async def test_not_ready_rig_recovers_when_its_remote_answers(time_skipping: WorkflowEnvironment) -> None:
    """A rig NotReady because its remote is down turns Ready by itself once the remote answers."""
    checks = FakeChecks()
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    client = time_skipping.client
    async with Worker(client, task_queue=queue, workflows=[RigWorkflow], activities=checks.all()):
        handle = await client.start_workflow(
            RigWorkflow.run,
            # A short recheck, in real time: the shared test server may not skip time while
            # other tests' cancelled activities are still settling.
            RigInput(rig=a_rig(), recheck_not_ready=timedelta(seconds=0.2)),
            id=f"rig/{queue}",
            task_queue=queue,
        )

        async def phase(wanted: str) -> Rig | None:
            current: Rig = await handle.query(RigWorkflow.current)
            return current if current.status and current.status.phase == wanted else None

        await wait_until(lambda: phase("NotReady"), "NotReady")
        checks.answers = True
        ready = await wait_until(lambda: phase("Ready"), "Ready after the recheck")
        assert ready.status is not None and ready.status.conditions[0].reason == "RigReady"
        await handle.signal(RigWorkflow.delete)
        await handle.result()


async def test_names_follow_the_pools_and_are_held_until_released(time_skipping: WorkflowEnvironment) -> None:
    """Names come from the pools in order, never one found taken; a holder keeps its name until released;
    polecatCount follows the count of live polecats."""
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    client = time_skipping.client
    checks = FakeChecks(answers=True)
    async with Worker(client, task_queue=queue, workflows=[RigWorkflow], activities=checks.all()):
        rig_input = RigInput(rig=a_rig(namePools=["bolt", "minerals"]))
        handle = await client.start_workflow(RigWorkflow.run, rig_input, id=f"rig/{queue}", task_queue=queue)

        async def name(holder: str, *taken: str) -> str:
            request = NameRequest(holder=holder, taken=list(taken))
            allocated: str = await handle.execute_update(RigWorkflow.allocate_name, request)
            return allocated

        assert await name("convoy/default/a#gt-1", "bolt") == "obsidian"  # "bolt": a polecat made by hand
        assert await name("convoy/default/a#gt-2") == "bolt"
        assert await name("convoy/default/a#gt-1") == "obsidian"  # the same holder, the same name
        await handle.signal(RigWorkflow.release_names, "convoy/default/a#")
        assert await name("convoy/default/b#gt-9") == "bolt"

        async def count(expected: int) -> bool:
            current: Rig = await handle.query(RigWorkflow.current)
            return current.status is not None and current.status.polecat_count == expected

        checks.live = 2
        await wait_until(lambda: count(2), "polecatCount 2")
        checks.live = 0
        await wait_until(lambda: count(0), "polecatCount 0")
        await handle.signal(RigWorkflow.delete)
        await asyncio.wait_for(handle.result(), 20)


async def test_a_rig_has_one_of_each_whoever_claims_it(time_skipping: WorkflowEnvironment) -> None:
    """A second Refinery is refused, naming the first, whether claimed with `claim` or with the
    `claim_refinery` update a bridge of an earlier version sends; once released, another may claim."""
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    client = time_skipping.client
    async with Worker(
        client, task_queue=queue, workflows=[RigWorkflow], activities=FakeChecks(answers=True).all()
    ):
        handle = await client.start_workflow(
            RigWorkflow.run, RigInput(rig=a_rig()), id=f"rig/{queue}", task_queue=queue
        )
        await handle.execute_update(RigWorkflow.claim, RigClaim(kind="Refinery", holder="default/first"))
        for update, claim in [
            (RigWorkflow.claim, RigClaim(kind="Refinery", holder="default/second")),
            (RigWorkflow.claim_refinery, RigClaim(holder="default/second")),
        ]:
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(update, claim)
            assert "already has a Refinery (default/first); a rig has one" in str(refused.value.cause)
        await handle.signal(RigWorkflow.release, RigRelease(kind="Refinery", holder="default/first"))
        await handle.execute_update(RigWorkflow.claim_refinery, RigClaim(holder="default/second"))
        memo = await (await handle.describe()).memo()
        assert memo[attributes.MEMO_REFINERY] == "default/second"
        await handle.signal(RigWorkflow.delete)
        await asyncio.wait_for(handle.result(), 20)


@dataclass
class HeldCR:
    """A CR whose status writes hang until `answering` is set: a run that rolls over waits for them."""

    answering: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    @activity.defn(name=status.PUBLISH_STATUS)
    async def publish_status(self, update: StatusUpdate) -> None:
        self.waiting += 1
        await self.answering.wait()


TARGET = StatusTarget(
    group="gastown.gastown.io",
    version="v1alpha1",
    plural="rigs",
    kind="Rig",
    namespace=None,
    name="athena",
    uid="u1",
)


@pytest.mark.parametrize("sent", ["apply", "delete"])
async def test_what_comes_while_a_run_rolls_over_goes_to_the_next(
    time_skipping: WorkflowEnvironment, sent: str
) -> None:
    """A new spec or a delete that comes while a run waits to continue as new (for its status to
    reach the CR) is the next run's: the spec is the one it checks, the delete ends it. Both were
    lost: the next run's input was made before the wait, and the delete was not in the state."""
    checks, cr = FakeChecks(answers=True), HeldCR()
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    client = time_skipping.client
    activities = [*checks.all(), cr.publish_status]
    async with Worker(client, task_queue=queue, workflows=[RigWorkflow], activities=activities):
        handle = await client.start_workflow(
            RigWorkflow.run,
            RigInput(rig=a_rig(), status_target=TARGET, history_limit=1),
            id=f"rig/{queue}",
            task_queue=queue,
        )
        first_run = (await handle.describe()).run_id
        await wait_until(lambda: cr.waiting, "the first status on its way to the CR")
        if sent == "apply":
            await handle.execute_update(RigWorkflow.apply, a_rig(gitURL="y"))
        else:
            await handle.signal(RigWorkflow.delete)
        cr.answering.set()

        latest = client.get_workflow_handle(handle.id)

        async def next_run() -> Any:
            described = await latest.describe()
            return described if described.run_id != first_run else None

        described = await wait_until(next_run, "the next run")
        if sent == "apply":
            await latest.signal(RigWorkflow.delete)  # a run of history_limit 1 rolls over again and again
            history = await client.get_workflow_handle(handle.id, run_id=described.run_id).fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes
            (next_input,) = await client.data_converter.decode(started.input.payloads, [RigInput])
            assert next_input.rig.spec.git_url == "y"
        else:
            ended = await wait_until(
                lambda: _ended(latest), "the next run to end, the rig being deleted", timeout=10
            )
            assert ended == WorkflowExecutionStatus.COMPLETED, described


async def _ended(handle: Any) -> Any:
    status_now = (await handle.describe()).status
    return status_now if status_now != WorkflowExecutionStatus.RUNNING else None
