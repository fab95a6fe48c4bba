"""The Convoy workflow's policy, on the time-skipping test server.

The convoy's activities are replaced by a small fake world: `spawn` creates a
polecat in it (Pending), the test moves polecats between phases, and `watch`
answers with the world's snapshot when it differs from the convoy's. No
tmux, git or real polecat runs here (the integration tests do that).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts import convoys
from contracts.convoys import ConvoySnapshot, PolecatSeen, RemoveRequest, SpawnRequest, WatchRequest
from crds import Convoy
from crds.convoy import ConvoyStatus
from tests.helpers import parsed, wait_until
from tests.workflows.conftest import Starter, rolled_over_and_replays, status_when
from workflows.convoy import ConvoyInput, ConvoyWorkflow


@dataclass
class World:
    """The polecats that exist, and which beads the bead store shows closed."""

    polecats: dict[str, PolecatSeen] = field(default_factory=dict)  # name -> polecat
    closed: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)  # beads whose polecat the store refuses
    spawned: list[str] = field(default_factory=list)  # beads, in spawn order
    removed: list[str] = field(default_factory=list)
    peak: int = 0  # most polecats in progress at any spawn

    def snapshot(self) -> ConvoySnapshot:
        polecats = sorted(self.polecats.values(), key=lambda p: (p.bead_id, p.name))
        return ConvoySnapshot(polecats=polecats, closed=sorted(self.closed))

    def in_progress(self) -> int:
        return sum(p.phase in ("Pending", "Idle", "Working") for p in self.polecats.values())

    def move(self, bead: str, phase: str) -> None:
        for polecat in self.polecats.values():
            if polecat.bead_id == bead:
                polecat.phase = phase

    @activity.defn(name=convoys.SPAWN)
    async def spawn(self, request: SpawnRequest) -> str:
        if request.bead_id in self.refuse:
            raise ApplicationError(
                "spec.beadID: refused by the test", type="PolecatRefused", non_retryable=True
            )
        name = f"p{len(self.spawned) + 1}"
        self.spawned.append(request.bead_id)
        self.polecats[name] = PolecatSeen(name=name, bead_id=request.bead_id, phase="Pending")
        self.peak = max(self.peak, self.in_progress())
        return name

    @activity.defn(name=convoys.WATCH)
    async def watch(self, request: WatchRequest) -> ConvoySnapshot:
        while True:
            snapshot = self.snapshot()
            if snapshot.digest() != request.seen:
                return snapshot
            activity.heartbeat()
            await asyncio.sleep(0.02)

    @activity.defn(name=convoys.REMOVE)
    async def remove(self, request: RemoveRequest) -> None:
        self.removed += request.names
        for name in request.names:
            self.polecats.pop(name, None)

    def all(self) -> list[Any]:
        return [self.spawn, self.watch, self.remove]


def a_convoy(beads: list[str], **spec: Any) -> Convoy:
    return parsed(
        Convoy,
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Convoy",
            "metadata": {"name": "wave", "namespace": "default", "uid": "c0nv0y"},
            "spec": {"rigRef": "athena", "trackedBeads": beads, "autoSpawn": True, **spec},
        },
    )


@pytest.fixture
def run(start_workflow: Starter) -> Any:
    """Start a convoy workflow against a fake world; yields a starter."""

    async def start(world: World, convoy: Convoy, history_limit: int = 4000) -> WorkflowHandle[Any, Any]:
        convoy_input = ConvoyInput(convoy=convoy, rig=None, history_limit=history_limit)
        return await start_workflow(
            ConvoyWorkflow, ConvoyWorkflow.run, convoy_input, world.all(), "convoy/default"
        )

    return start


async def spawned(world: World, bead: str) -> None:
    await wait_until(lambda: bead in world.spawned, f"{bead} spawned")


async def status_where(handle: WorkflowHandle[Any, Any], what: str, holds: Any) -> ConvoyStatus:
    return await status_when(handle, ConvoyStatus, holds, what)


async def test_parallelism_caps_the_beads_in_progress(run: Any) -> None:
    """With parallelism 2 over 5 beads, no spawn ever makes more than 2 in progress; all complete in order."""
    world = World()
    beads = [f"gt-{n}" for n in range(1, 6)]
    handle = await run(world, a_convoy(beads, parallelism=2))
    for bead in beads:
        await spawned(world, bead)
        world.move(bead, "Working")
        await status_where(handle, "the convoy sees it Working", lambda s: s.phase == "Active")
        world.move(bead, "Succeeded")
    done = await status_where(handle, "Completed", lambda s: s.phase == "Completed")
    assert sorted(world.spawned) == beads and world.peak <= 2
    assert (done.total, done.completed, done.in_progress, done.pending) == (5, 5, 0, 0)
    assert done.start_time is not None and done.completion_time is not None


async def test_closed_beads_count_completed_and_are_never_spawned(run: Any) -> None:
    """A bead the bead store shows closed is completed without a polecat."""
    world = World(closed={"gt-2"})
    handle = await run(world, a_convoy(["gt-1", "gt-2"]))
    await wait_until(lambda: "gt-1" in world.spawned, "gt-1 spawned")
    world.move("gt-1", "Succeeded")
    done = await status_where(handle, "Completed", lambda s: s.phase == "Completed")
    assert world.spawned == ["gt-1"]
    assert [(ref.bead_id, ref.phase) for ref in done.polecats] == [("gt-1", "Succeeded")]


async def test_a_refused_polecat_fails_its_bead_and_says_why(run: Any) -> None:
    """A bead whose polecat cannot be created counts failed; the message carries the reason."""
    world = World(refuse={"gt-1"})
    handle = await run(world, a_convoy(["gt-1"]))
    failed = await status_where(handle, "Failed", lambda s: s.phase == "Failed")
    assert failed.failed == 1
    assert "no polecat for gt-1: spec.beadID: refused by the test" in failed.message


async def test_a_deleted_failed_polecat_is_spawned_again(run: Any) -> None:
    """Deleting a failed polecat makes its bead pending again: the convoy spawns a new one and goes Active."""
    world = World()
    handle = await run(world, a_convoy(["gt-1"]))
    await wait_until(lambda: world.spawned == ["gt-1"], "gt-1 spawned")
    world.move("gt-1", "Failed")
    await status_where(handle, "Failed", lambda s: s.phase == "Failed")
    world.polecats.clear()  # a person deletes the failed polecat
    await wait_until(lambda: world.spawned == ["gt-1", "gt-1"], "gt-1 spawned again")
    world.move("gt-1", "Succeeded")
    done = await status_where(handle, "Completed", lambda s: s.phase == "Completed")
    assert [ref.name for ref in done.polecats] == ["p2"]


async def test_delete_removes_spawned_polecats_and_ends(run: Any) -> None:
    """The delete signal removes every polecat the convoy spawned, then the workflow ends."""
    world = World()
    handle = await run(world, a_convoy(["gt-1", "gt-2"]))
    await wait_until(lambda: len(world.spawned) == 2, "both spawned")
    # Deleted once its watch waits on a still world: a delete that meets a watch completing at that
    # moment has the test server reject the cancel of a finished activity ("ACTIVITY_UNKNOWN") and
    # stall the workflow; the real server accepts it (the activity's completion is buffered).
    await status_where(handle, "both polecats seen", lambda s: s.in_progress == 2)
    await handle.signal(ConvoyWorkflow.delete)

    async def ended() -> bool:
        return bool((await handle.describe()).status == WorkflowExecutionStatus.COMPLETED)

    # Polled, not `handle.result()`: waiting on the result lets the test server skip time, which can
    # fire the timeouts of activities still running on a slow machine (seen: a 180 s hang).
    await wait_until(ended, "the convoy's workflow to end")
    assert sorted(world.removed) == ["p1", "p2"]


async def test_history_replays_and_rolls_over(run: Any, time_skipping: WorkflowEnvironment) -> None:
    """A convoy's history replays deterministically, and continue-as-new carries its state."""
    world = World()
    beads = [f"gt-{n}" for n in range(1, 9)]
    handle = await run(world, a_convoy(beads, parallelism=3), history_limit=40)
    first_run = (await handle.describe()).run_id
    for bead in beads:
        await spawned(world, bead)
        world.move(bead, "Succeeded")
    done = await status_where(handle, "Completed", lambda s: s.phase == "Completed")
    assert world.peak <= 3 and done.completed == 8 and len(world.spawned) == 8
    await rolled_over_and_replays(time_skipping.client, handle.id, ConvoyWorkflow, first_run)
