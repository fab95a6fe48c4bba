"""The Rig workflow's policy on the time-skipping test server: rechecks, counts, names."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts import attributes, git, visibility
from contracts.git import RigCheck
from contracts.rig import NameRequest, RigClaim, RigRelease
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
