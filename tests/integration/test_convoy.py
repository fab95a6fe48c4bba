"""Convoys for real: polecats spawned as resources, worked in parallel up to the cap, with real tmux and git."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import BeadStore, Convoy, Polecat, parse_resource
from tests.helpers import (
    WORKER_COMMAND,
    GitRig,
    beadstore_manifest,
    convoy_manifest,
    max_concurrent,
    parsed,
    polecat,
    polecat_manifest,
    reach,
    rig,
    rig_manifest,
    terminate_running,
    wait_until,
    worker_env,
    write_beads,
)
from workflows.names import pool_names

pytestmark = pytest.mark.usefixtures("worker")


def convoy(manifest: dict[str, Any]) -> Convoy:
    return parsed(Convoy, manifest)


async def convoy_phase(reconciler: Reconciler, name: str, *phases: str, timeout: float = 30.0) -> Convoy:
    return await reach(reconciler, Convoy, name, *phases, timeout=timeout)


async def town(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, beads: list[dict[str, Any]], source: Path
) -> None:
    """A rig with a BeadStore over `beads`, synced."""
    write_beads(source, beads)
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig, beadsPrefix="gt")))
    store = parse_resource(beadstore_manifest("beads", rig_name, str(source)))
    await reconciler.apply(store)
    await reach(reconciler, BeadStore, "beads", "Synced")


async def test_autospawn_works_every_open_bead_within_the_cap(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Polecats named from the rig's pool work each open bead, never more than parallelism at once; closed
    beads count done; the convoy's cost is its polecats' together."""
    beads = [{"id": f"gt-{n}"} for n in range(1, 6)] + [{"id": "gt-6", "status": "closed"}]
    await town(reconciler, git_rig, rig_name, beads, tmp_path / "issues.jsonl")
    spans = tmp_path / "spans"
    ids = [str(bead["id"]) for bead in beads]
    manifest = convoy_manifest("wave", rig_name, ids, "--spans", str(spans), "--pause", "0.3", "--say", "working",
                               "--commit", "WORK.md=done", "--usage", "claude-haiku-4-5=1000,200",
                               parallelism=2)  # fmt: skip
    assert await reconciler.apply(convoy(manifest)) == "created"

    done = await convoy_phase(reconciler, "wave", "Completed", timeout=90)
    status = done.status
    assert status is not None
    assert (status.total, status.completed, status.failed, status.in_progress, status.pending) == (
        6,
        6,
        0,
        0,
        0,
    )
    assert status.start_time is not None and status.completion_time is not None
    assert max_concurrent(spans) == 2
    assert (
        sorted(line.split()[1] for line in spans.read_text().splitlines() if line.startswith("start"))
        == ids[:5]
    )

    polecats = await reconciler.list(Polecat, "default")
    assert {p.spec.bead_id for p in polecats} == set(ids[:5])  # none for the closed bead
    assert {p.name for p in polecats} == set(pool_names([])[:5])  # the default pool, first names first
    assert all(p.metadata.labels["gastown.gastown.io/convoy"] == "wave" for p in polecats)
    assert {(ref.bead_id, ref.phase) for ref in status.polecats} == {(bead, "Succeeded") for bead in ids[:5]}
    assert set(git_rig.remote_branches()) >= {f"polecat/{p.name}" for p in polecats}
    # Each agent reported 1,000 input and 200 output tokens of claude-haiku-4-5 ($1 and $5 a million).
    assert status.usage is not None and (status.usage.requests, status.usage.cost) == (5, "$0.0100")


async def test_a_failed_bead_fails_the_convoy(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """One polecat fails: the others finish, and the convoy ends Failed with the counts."""
    await town(reconciler, git_rig, rig_name, [{"id": "gt-1"}, {"id": "gt-2"}], tmp_path / "issues.jsonl")
    await reconciler.apply(convoy(convoy_manifest("wave", rig_name, ["gt-1", "gt-2"], "--exit-if", "gt-2=3")))
    done = await convoy_phase(reconciler, "wave", "Failed", timeout=60)
    assert done.status is not None
    assert (done.status.completed, done.status.failed) == (1, 1)
    assert "1 failed" in done.status.message


async def test_without_autospawn_the_convoy_tracks_polecats_made_by_hand(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """autoSpawn false: no polecat is created; one a person creates for a tracked bead shows in the status."""
    await town(reconciler, git_rig, rig_name, [{"id": "gt-1"}, {"id": "gt-2"}], tmp_path / "issues.jsonl")
    manifest = convoy_manifest("watch", rig_name, ["gt-1", "gt-2"], autoSpawn=False)
    await reconciler.apply(convoy(manifest))
    pending = await convoy_phase(reconciler, "watch", "Pending")
    assert pending.status is not None and pending.status.pending == 2
    await reconciler.apply(polecat(polecat_manifest("handmade", rig_name, beadID="gt-1")))

    async def one_done() -> Convoy | None:
        found = await reconciler.find(Convoy, "default", "watch")
        return found if found and found.status and found.status.completed == 1 else None

    tracked = await wait_until(one_done, "the hand-made polecat's bead completed")
    assert tracked.status is not None
    assert [(ref.name, ref.bead_id, ref.phase) for ref in tracked.status.polecats] == [
        ("handmade", "gt-1", "Succeeded")
    ]
    assert (tracked.status.phase, tracked.status.pending) == ("Active", 1)
    assert [p.name for p in await reconciler.list(Polecat, "default")] == ["handmade"]


async def test_deleting_a_convoy_stops_its_polecats(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Deleting the convoy deletes the polecats it spawned (their agents stop); others stay."""
    await town(reconciler, git_rig, rig_name, [{"id": "gt-1"}, {"id": "gt-2"}], tmp_path / "issues.jsonl")
    await reconciler.apply(
        polecat(polecat_manifest("bystander", rig_name, beadID="gt-9", taskDescription="x"))
    )
    gate = tmp_path / "never"
    await reconciler.apply(
        convoy(convoy_manifest("wave", rig_name, ["gt-1", "gt-2"], "--wait-for", str(gate)))
    )

    async def working() -> Convoy | None:
        found = await reconciler.find(Convoy, "default", "wave")
        ok = found and found.status and sum(ref.phase == "Working" for ref in found.status.polecats) == 2
        return found if ok else None

    before = await wait_until(working, "both polecats Working")
    assert before.status is not None
    spawned = [ref.name for ref in before.status.polecats]
    await reconciler.delete(Convoy, "default", "wave")

    async def only_bystander() -> bool:
        return [p.name for p in await reconciler.list(Polecat, "default")] == ["bystander"]

    await wait_until(only_bystander, "the convoy's polecats gone, the bystander left")
    for ref in spawned:
        assert await reconciler.find(Polecat, "default", ref) is None


async def test_convoy_of_200_beads_never_exceeds_its_parallelism(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """200 beads at parallelism 20 with a fast agent all complete; the most agents seen running at once is 20 at most."""
    ids = [f"gt-{n}" for n in range(1, 201)]
    await town(reconciler, git_rig, rig_name, [{"id": bead} for bead in ids], tmp_path / "issues.jsonl")
    spans = tmp_path / "spans"
    await reconciler.apply(
        convoy(
            convoy_manifest(
                "big", rig_name, ids, "--spans", str(spans), "--say", "on it", "--pause", "1", parallelism=20
            )
        )
    )
    done = await convoy_phase(reconciler, "big", "Completed", "Failed", timeout=600)
    assert done.status is not None
    assert (done.status.phase, done.status.completed) == ("Completed", 200)
    peak = max_concurrent(spans)
    print(f"200 beads, parallelism 20: most agents running at once {peak}")
    assert 1 < peak <= 20


async def test_cap_holds_across_a_worker_killed_mid_convoy(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL the worker while a convoy runs and start another: it completes, never more than
    parallelism agents at once, and no bead's agent ran twice."""
    queue = settings.task_queue + "-sub"  # a queue only the subprocess workers poll
    sub = Reconciler(reconciler.client, queue)
    env = worker_env(settings.temporal_address, queue, settings.home, settings.tmux_socket)
    ids = [f"gt-{n}" for n in range(1, 10)]
    spans = tmp_path / "spans"
    first = subprocess.Popen(WORKER_COMMAND, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second: subprocess.Popen[bytes] | None = None
    try:
        await town(sub, git_rig, rig_name, [{"id": bead} for bead in ids], tmp_path / "issues.jsonl")
        args = ("--spans", str(spans), "--say", "on it", "--pause", "1")
        await sub.apply(convoy(convoy_manifest("wave", rig_name, ids, *args, parallelism=3)))
        await wait_until(
            lambda: spans.exists() and spans.read_text().count("start") >= 4, "a few agents started"
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = subprocess.Popen(
            WORKER_COMMAND, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        done = await convoy_phase(sub, "wave", "Completed", "Failed", timeout=180)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        await terminate_running(reconciler.client, queue)
    assert done.status is not None and done.status.phase == "Completed"
    starts = [line.split()[1] for line in spans.read_text().splitlines() if line.startswith("start")]
    assert sorted(starts) == sorted(ids)  # each bead's agent ran exactly once
    assert max_concurrent(spans) <= 3


async def test_a_spent_convoy_budget_stops_its_polecats_and_a_raised_one_continues_them(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A budget of 1,500 tokens for the convoy: its first two agents report 1,000 each and work on.
    Both are stopped (Failed, ConvoyBudgetExceeded), no third is spawned, and the convoy is Failed
    saying why. A raised budget continues the two, each in a new attempt, and spawns the rest."""
    beads = [{"id": f"gt-{n}"} for n in range(1, 5)]
    await town(reconciler, git_rig, rig_name, beads, tmp_path / "issues.jsonl")
    gate = tmp_path / "gate"
    ids = [str(bead["id"]) for bead in beads]
    args = ["--usage", "m=1000,0", "--wait-for", str(gate)]
    manifest = convoy_manifest("wave", rig_name, ids, *args, parallelism=2, budget={"maxTokens": 1500})
    await reconciler.apply(convoy(manifest))

    failed = await convoy_phase(reconciler, "wave", "Failed", timeout=60)
    assert failed.status is not None
    assert "budget spent: used 2,000 tokens of spec.budget.maxTokens 1,500" in failed.status.message

    async def stopped() -> list[Polecat] | None:
        polecats = await reconciler.list(Polecat, "default")
        done = [p for p in polecats if p.status and p.status.phase == "Failed"]
        return polecats if len(done) == 2 == len(polecats) else None

    first = await wait_until(stopped, "the two working polecats to be stopped", timeout=30)
    for stopped_one in first:
        assert stopped_one.status is not None
        reasons = [c.reason for c in stopped_one.status.conditions if c.type == "Failed"]
        assert reasons == ["ConvoyBudgetExceeded"]

    manifest["spec"]["budget"] = {"maxTokens": 100_000}
    await reconciler.apply(convoy(manifest))
    gate.touch()
    done = await convoy_phase(reconciler, "wave", "Completed", timeout=90)
    assert done.status is not None and done.status.usage is not None
    assert done.status.usage.new_tokens == 6000  # the first two twice (both attempts), the others once
    polecats = {p.name: p for p in await reconciler.list(Polecat, "default")}
    assert len(polecats) == 4
    assert sorted(p.status.restarts for p in polecats.values() if p.status) == [0, 0, 1, 1]
