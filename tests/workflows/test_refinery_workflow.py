"""The Refinery workflow's policy, on the time-skipping test server.

Its git activities are replaced by a fake remote: a branch is good, bad
(fails the checks) or conflicting; `land` moves the fake target. No git runs
here (tests/integration/test_merges.py and test_refinery.py do that).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts import merges, visibility
from contracts.merges import Candidate, CheckRequest, Landed, PrepareRequest
from contracts.visibility import FinishedPolecats, SucceededWatch
from crds import Refinery, Rig
from crds.refinery import CheckResult, RefineryStatus
from tests.helpers import parsed
from tests.workflows.conftest import Starter, rolled_over_and_replays, status_when
from workflows.refinery import RETRY_BLOCKED, EnqueueRequest, RefineryInput, RefineryWorkflow


@dataclass
class Remote:
    """A fake remote: what each branch is like, and what landed on the target, in order."""

    bad: set[str] = field(default_factory=set)
    conflicting: set[str] = field(default_factory=set)
    no_remote: bool = False
    landed: list[str] = field(default_factory=list)  # branches, in landing order
    moved_once: set[str] = field(default_factory=set)  # their first landing finds the target moved

    @activity.defn(name=merges.PREPARE)
    async def prepare(self, request: PrepareRequest) -> Candidate:
        if self.no_remote:
            raise ApplicationError(
                "the rig has no remote to land on", type="RigHasNoRemote", non_retryable=True
            )
        parts = [part.model_copy(update={"head": f"{part.branch}-head"}) for part in request.recipe.parts]
        pinned = {"base": f"base{len(self.landed)}", "remote": "fake", "parts": parts}
        recipe = request.recipe.model_copy(update=pinned)
        branches = [part.branch for part in recipe.parts]
        stacked = [b for b in branches if b not in self.conflicting]
        return Candidate(
            recipe=recipe,
            tip=f"tip-{'+'.join(stacked)}" if stacked else None,
            stacked=stacked,
            conflicts={b: ["README.md"] for b in branches if b in self.conflicting},
        )

    @activity.defn(name=merges.CHECK)
    async def check(self, request: CheckRequest) -> list[CheckResult]:
        passed = not self.bad & set(request.candidate.stacked)
        return [CheckResult(command=request.commands[0], passed=passed, exit_code=0 if passed else 1)]

    @activity.defn(name=merges.LAND)
    async def land(self, candidate: Candidate) -> Landed:
        moved = self.moved_once & set(candidate.stacked)
        if moved:
            self.moved_once -= moved
            raise ApplicationError("main moved", type="TargetMoved", non_retryable=True)
        self.landed += candidate.stacked
        assert candidate.tip is not None
        return Landed(commit=candidate.tip, remote_head=candidate.tip)

    @activity.defn(name=visibility.WATCH_SUCCEEDED)
    async def watch_succeeded(self, watch: SucceededWatch) -> FinishedPolecats:
        while True:  # no polecats in this world: answer once, then only heartbeat
            found = FinishedPolecats()
            if found.digest() != watch.seen:
                return found
            activity.heartbeat()
            await asyncio.sleep(0.05)

    def all(self) -> list[Any]:
        return [self.prepare, self.check, self.land, self.watch_succeeded]


def a_refinery(**spec: Any) -> Refinery:
    return parsed(
        Refinery,
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Refinery",
            "metadata": {"name": "refinery", "namespace": "default", "uid": "r3f1n3ry"},
            "spec": {"rigRef": "athena", "autoMerge": True, "requiredChecks": ["make test"], **spec},
        },
    )


RIG = Rig.model_validate({"metadata": {"name": "athena"}, "spec": {"gitURL": "fake"}})


@pytest.fixture
def run(start_workflow: Starter) -> Any:
    async def start(
        remote: Remote,
        refinery: Refinery,
        history_limit: int = 4000,
        retry_blocked: timedelta = RETRY_BLOCKED,
    ) -> WorkflowHandle[Any, Any]:
        refinery_input = RefineryInput(
            refinery=refinery, rig=RIG, history_limit=history_limit, retry_blocked=retry_blocked
        )
        return await start_workflow(
            RefineryWorkflow, RefineryWorkflow.run, refinery_input, remote.all(), "refinery/default"
        )

    return start


async def settled(handle: WorkflowHandle[Any, Any], merged: int) -> RefineryStatus:
    """The status once `merged` landed and nothing waits."""

    def holds(status: RefineryStatus) -> bool:
        busy = any(entry.status in ("Pending", "Testing") for entry in status.queue)
        return status.merged == merged and not busy and status.phase == "Idle"

    return await status_when(handle, RefineryStatus, holds, f"{merged} merged and the queue settled")


async def enqueue(handle: WorkflowHandle[Any, Any], *branches: str) -> None:
    for branch in branches:
        await handle.execute_update(RefineryWorkflow.enqueue, [EnqueueRequest(branch=branch)])


async def test_a_batch_with_two_culprits_lands_the_rest(run: Any) -> None:
    """batchSize 8 with two bad branches: bisection rejects exactly those two and lands the six others, in order."""
    remote = Remote(bad={"b3", "b6"})
    handle = await run(remote, a_refinery(autoMerge=False, batchSize=8))
    branches = [f"b{n}" for n in range(1, 9)]
    await enqueue(handle, *branches)  # the first is tested alone at once; the rest wait behind it
    for branch in branches:
        await handle.signal(RefineryWorkflow.approve, branch)
    status = await settled(handle, merged=6)
    assert remote.landed == ["b1", "b2", "b4", "b5", "b7", "b8"]
    assert {r.branch for r in status.recent if r.outcome == "Rejected"} == {"b3", "b6"}
    assert not remote.bad & set(remote.landed)


async def test_an_approval_given_before_the_branch_is_queued_is_kept(run: Any) -> None:
    """autoMerge false: approving a branch before it is queued counts; it lands once queued, with no
    second approval."""
    remote = Remote()
    handle = await run(remote, a_refinery(autoMerge=False))
    await handle.signal(RefineryWorkflow.approve, "b1")
    await enqueue(handle, "b1")
    await settled(handle, merged=1)
    assert remote.landed == ["b1"]


async def test_an_approval_survives_a_landing_refused_because_the_target_moved(run: Any) -> None:
    """An approved branch whose push is refused (the target moved) is made again and lands without
    being approved again."""
    remote = Remote(moved_once={"b1"})
    handle = await run(remote, a_refinery(autoMerge=False))
    await enqueue(handle, "b1")
    await handle.signal(RefineryWorkflow.approve, "b1")
    await settled(handle, merged=1)
    assert remote.landed == ["b1"] and not remote.moved_once


async def test_conflicts_stay_queued_and_are_listed(run: Any) -> None:
    """A conflicting branch stays in the queue as Conflict, listed in status.conflicts; the queue goes Idle."""
    remote = Remote(conflicting={"b2"})
    handle = await run(remote, a_refinery())
    await enqueue(handle, "b1", "b2", "b3")
    status = await settled(handle, merged=2)
    assert [(e.branch, e.status) for e in status.queue] == [("b2", "Conflict")]
    assert [(c.branch, c.files) for c in status.conflicts] == [("b2", ["README.md"])]
    await handle.execute_update(RefineryWorkflow.dequeue, "b2")
    status = await handle.query(RefineryWorkflow.status)
    assert status.queue == [] and status.conflicts == []


async def test_a_rig_without_a_remote_blocks_until_it_has_one(run: Any) -> None:
    """While there is no remote to land on the refinery is Blocked, saying why; it lands once there is one."""
    remote = Remote(no_remote=True)
    handle = await run(remote, a_refinery(), retry_blocked=timedelta(seconds=1))
    await enqueue(handle, "b1")

    status = await status_when(handle, RefineryStatus, lambda s: s.phase == "Blocked", "Blocked")
    assert status.message.startswith("the rig has no remote to land on; trying again every")
    remote.no_remote = False
    await settled(handle, merged=1)


async def test_history_replays_and_rolls_over(run: Any, time_skipping: WorkflowEnvironment) -> None:
    """A refinery's history replays deterministically, and continue-as-new carries its queue and counts."""
    remote = Remote()
    handle = await run(remote, a_refinery(), history_limit=60)
    first_run = (await handle.describe()).run_id
    branches = [f"b{n}" for n in range(1, 13)]
    for branch in branches:
        await enqueue(handle, branch)
    status = await settled(handle, merged=12)
    assert remote.landed == branches and len(status.recent) == 12
    await rolled_over_and_replays(time_skipping.client, handle.id, RefineryWorkflow, first_run)
