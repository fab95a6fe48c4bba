"""The Rig workflow's policy on the time-skipping test server: rechecks, counts, names."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.git import RigCheck
from crds.rig import Rig, RigSpec
from tests.helpers import rig, wait_until
from workflows.rig import NameRequest, PolecatNote, RigInput, RigWorkflow


@dataclass
class FakeChecks:
    """The rig's remote answers once `answers` is set."""

    answers: bool = False
    calls: list[bool] = field(default_factory=list)

    @activity.defn(name="git.check_rig")
    async def check_rig(self, spec: RigSpec) -> RigCheck:
        self.calls.append(self.answers)
        if self.answers:
            return RigCheck(ready=True, reason="RigReady", message="remote ready")
        return RigCheck(reason="RemoteUnreachable", message="gitURL x does not answer")


def a_rig(**spec: object) -> Rig:
    return rig({"apiVersion": "gastown.gastown.io/v1alpha1", "kind": "Rig",
                "metadata": {"name": "athena"}, "spec": {"gitURL": "x", **spec}})  # fmt: skip


async def test_not_ready_rig_recovers_when_its_remote_answers(time_skipping: WorkflowEnvironment) -> None:
    """A rig NotReady because its remote is down turns Ready by itself once the remote answers."""
    checks = FakeChecks()
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    client = time_skipping.client
    async with Worker(client, task_queue=queue, workflows=[RigWorkflow], activities=[checks.check_rig]):
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


async def test_names_follow_the_pools_and_are_freed_when_polecats_go(
    time_skipping: WorkflowEnvironment,
) -> None:
    """Names come from the pools in order, skip names in use, and return once their polecat is deleted;
    polecatCount counts polecats not finished."""
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    client = time_skipping.client
    checks = FakeChecks(answers=True)
    async with Worker(client, task_queue=queue, workflows=[RigWorkflow], activities=[checks.check_rig]):
        rig_input = RigInput(rig=a_rig(namePools=["bolt", "minerals"]))
        handle = await client.start_workflow(RigWorkflow.run, rig_input, id=f"rig/{queue}", task_queue=queue)
        await handle.signal(
            RigWorkflow.polecat_changed, PolecatNote(namespace="default", name="bolt", phase="Working")
        )
        first = await handle.execute_update(RigWorkflow.allocate_name, NameRequest(holder="a"))
        second = await handle.execute_update(
            RigWorkflow.allocate_name, NameRequest(holder="b", taken=["quartz"])
        )
        assert (first, second) == ("obsidian", "jasper")  # "bolt" is in use (made by hand), "quartz" taken

        async def count(expected: int) -> bool:
            current: Rig = await handle.query(RigWorkflow.current)
            return current.status is not None and current.status.polecat_count == expected

        await wait_until(lambda: count(1), "polecatCount 1")
        await handle.signal(
            RigWorkflow.polecat_changed, PolecatNote(namespace="default", name="bolt", phase=None)
        )
        await wait_until(lambda: count(0), "polecatCount 0")
        third = await handle.execute_update(RigWorkflow.allocate_name, NameRequest(holder="c"))
        assert third == "bolt"
        await handle.signal(RigWorkflow.delete)
        await asyncio.wait_for(handle.result(), 20)
