"""The Refinery for real: polecats' branches merged through the queue into a bare remote, with real git and tmux."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from git import Repo

from bridge.reconcile import Reconciler
from crds import InvalidResource, Polecat, Refinery, parse_resource
from tests.helpers import (
    GitRig,
    polecat,
    polecat_manifest,
    python_check,
    reach,
    refinery,
    refinery_manifest,
    rig,
    rig_manifest,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("worker")


async def start(reconciler: Reconciler, git_rig: GitRig, rig_name: str, **spec: Any) -> None:
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(refinery(rig=rig_name, **spec))
    await reach(reconciler, Refinery, "refinery", "Idle")


async def work(reconciler: Reconciler, rig_name: str, name: str, files: dict[str, str]) -> Polecat:
    """A polecat that commits `files` and succeeds (its branch pushed)."""
    commits = [arg for path, text in files.items() for arg in ("--commit", f"{path}={text}")]
    await reconciler.apply(polecat(polecat_manifest(name, rig_name, *commits, beadID=f"gt-{name}")))
    return await reach(reconciler, Polecat, name, "Succeeded", "Failed")


async def queue_settles(reconciler: Reconciler, *, merged: int, timeout: float = 60.0) -> Refinery:
    """The refinery once it has merged `merged` entries and has nothing left to test."""

    async def probe() -> Refinery | None:
        found = await reconciler.find(Refinery, "default", "refinery")
        status = found.status if found else None
        busy = status is None or any(entry.status in ("Pending", "Testing") for entry in status.queue)
        return (
            found
            if status and status.merged >= merged and not busy and status.phase != "Processing"
            else None
        )

    return await wait_until(probe, f"the refinery to merge {merged}", timeout)


def merged_condition(polecat: Polecat) -> str | None:
    status = polecat.status
    assert status is not None
    return next((c.status for c in status.conditions if c.type == "Merged"), None)


async def test_succeeded_polecats_land_on_the_target(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """Each polecat that succeeds is queued, checked and merged into main; its branch leaves the remote."""
    check = python_check("import pathlib, sys; sys.exit(0 if pathlib.Path('README.md').exists() else 1)")
    await start(reconciler, git_rig, rig_name, autoMerge=True, requiredChecks=[check])
    await work(reconciler, rig_name, "nux", {"nux.txt": "from nux"})
    await work(reconciler, rig_name, "slit", {"slit.txt": "from slit"})
    done = await queue_settles(reconciler, merged=2)

    assert done.status is not None and done.status.last_merge is not None
    files = git_rig.files_on("main")
    assert files["nux.txt"] == "from nux\n" and files["slit.txt"] == "from slit\n"
    assert git_rig.remote_branches()["main"] == done.status.last_merge.commit  # verified on the remote
    assert set(git_rig.remote_branches()) == {"main"}  # polecat branches deleted
    assert {landing.branch: landing.outcome for landing in done.status.recent} == {
        "polecat/nux": "Merged",
        "polecat/slit": "Merged",
    }
    assert all(landing.commit for landing in done.status.recent)
    assert done.status.queue == [] and done.status.phase == "Idle"
    for name in ("nux", "slit"):
        polecat_now = await reconciler.get(Polecat, "default", name)
        assert polecat_now.status and polecat_now.status.phase == "Succeeded"
        assert merged_condition(polecat_now) == "True"
        assert "merged into main" in polecat_now.status.message


async def test_without_auto_merge_a_tested_branch_waits_for_approval(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """autoMerge false: the branch is tested, shown Ready, the queue Blocked, and lands once approved."""
    await start(reconciler, git_rig, rig_name, autoMerge=False)
    before = git_rig.remote_branches()["main"]
    await work(reconciler, rig_name, "nux", {"nux.txt": "n"})

    async def blocked() -> Refinery | None:
        found = await reconciler.find(Refinery, "default", "refinery")
        status = found.status if found else None
        ready = status and status.queue and status.queue[0].status == "Ready"
        return found if ready and status and status.phase == "Blocked" else None

    waiting = await wait_until(blocked, "the branch to wait Ready for approval")
    assert waiting.status and "waiting for approval of polecat/nux" in waiting.status.message
    assert git_rig.remote_branches()["main"] == before  # nothing landed without approval

    await reconciler.signal(Refinery, "default", "refinery", "approve", "polecat/nux")
    await queue_settles(reconciler, merged=1)
    assert "nux.txt" in git_rig.files_on("main")


async def test_a_conflict_fails_its_polecat_and_the_queue_moves_on(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """manual: the conflicting branch becomes Conflict with its files, its polecat Failed; later ones still
    land; fixed and queued again, it lands too."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    # All three start from the same main; the refinery, applied after, queues them by name.
    await work(reconciler, rig_name, "nux", {"README.md": "nux's readme"})
    await work(reconciler, rig_name, "slit", {"README.md": "slit's readme"})
    await work(reconciler, rig_name, "ace", {"ace.txt": "a"})
    await reconciler.apply(refinery(rig=rig_name, autoMerge=True))
    done = await queue_settles(reconciler, merged=2)

    assert done.status is not None
    assert [(c.branch, c.files) for c in done.status.conflicts] == [("polecat/slit", ["README.md"])]
    assert [(e.branch, e.status) for e in done.status.queue] == [("polecat/slit", "Conflict")]
    files = git_rig.files_on("main")
    assert files["README.md"] == "nux's readme\n" and "ace.txt" in files
    failed = await reach(reconciler, Polecat, "slit", "Failed")
    assert failed.status is not None
    reason = next(c.reason for c in failed.status.conditions if c.type == "Failed")
    assert reason == "MergeConflict" and "README.md" in failed.status.message
    assert "polecat/slit" in git_rig.remote_branches()  # kept, for a person to resolve

    # A person resolves it on the branch and queues it again: it lands, and the polecat says so.
    git_rig.push_branch("polecat/slit", {"README.md": "slit's readme, after nux's"}, author="slit")
    handle = await reconciler.running(Refinery, "default", "refinery")
    await handle.execute_update(
        "enqueue", [{"branch": "polecat/slit", "polecat": "slit", "namespace": "default"}]
    )
    done = await queue_settles(reconciler, merged=3)
    assert done.status is not None and done.status.queue == [] and done.status.conflicts == []
    assert git_rig.files_on("main")["README.md"] == "slit's readme, after nux's"
    slit = await reconciler.get(Polecat, "default", "slit")
    assert slit.status is not None and slit.status.phase == "Failed" and merged_condition(slit) == "True"


async def test_a_failing_check_rejects_the_branch(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """A required check that fails keeps the branch off main and fails its polecat, saying which check and why."""
    check = python_check(
        "import os, sys; print('bad.txt found'); sys.exit(1 if os.path.exists('bad.txt') else 0)"
    )
    await start(reconciler, git_rig, rig_name, autoMerge=True, requiredChecks=[check])
    before = git_rig.remote_branches()["main"]
    await work(reconciler, rig_name, "nux", {"bad.txt": "oops"})
    rejected = await reach(reconciler, Polecat, "nux", "Failed")

    assert rejected.status is not None
    reason = next(c.reason for c in rejected.status.conditions if c.type == "Failed")
    assert reason == "ChecksFailed" and "bad.txt found" in rejected.status.message
    assert git_rig.remote_branches()["main"] == before
    done = await queue_settles(reconciler, merged=0)
    assert done.status and done.status.recent[0].outcome == "Rejected"


async def test_a_push_refused_because_main_moved_is_retried_on_the_new_main(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Someone pushes to main while the checks run: the candidate is made again on their commit, never
    forced; the next branch's candidate, made ahead on the refused one, is made again too."""
    marker = tmp_path / "pushed-once"
    human = git_rig.checkout
    push = (
        "import pathlib, subprocess\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        f"    git = ['git', '-C', {str(human)!r}]\n"
        "    subprocess.run(git + ['fetch', '-q', 'origin'], check=True)\n"
        "    subprocess.run(git + ['checkout', '-q', '-B', 'hotfix', 'origin/main'], check=True)\n"
        f"    pathlib.Path({str(human / 'hotfix.txt')!r}).write_text('h\\n')\n"
        "    subprocess.run(git + ['add', 'hotfix.txt'], check=True)\n"
        "    subprocess.run(git + ['commit', '-q', '-m', 'human hotfix'], check=True)\n"
        "    subprocess.run(git + ['push', '-q', 'origin', 'hotfix:main'], check=True)\n"
    )
    await start(reconciler, git_rig, rig_name, autoMerge=False, requiredChecks=[python_check(push)])
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    git_rig.push_branch("polecat/slit", {"slit.txt": "s\n"}, author="slit")
    handle = await reconciler.running(Refinery, "default", "refinery")
    await handle.execute_update("enqueue", [{"branch": "polecat/nux"}])
    await wait_until(marker.exists, "the checks of polecat/nux to run (and the hotfix to be pushed)")
    await handle.execute_update("enqueue", [{"branch": "polecat/slit"}])
    for branch in ("polecat/nux", "polecat/slit"):  # nux lands with slit's candidate made ahead on it
        await handle.signal("approve", branch)
    await queue_settles(reconciler, merged=2)

    assert git_rig.log()[:3] == [
        "Merge polecat/slit into main",
        "Merge polecat/nux into main",
        "human hotfix",
    ]
    assert set(git_rig.files_on("main")) >= {"hotfix.txt", "nux.txt", "slit.txt"}


async def test_a_batch_bisects_to_the_culprit(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """batchSize 4, one bad branch: the three good ones land, the culprit is rejected, main never sees it."""
    runs = tmp_path / "check-runs"
    check = python_check(
        f"import os, sys; open({str(runs)!r}, 'a').write('run\\n'); sys.exit(1 if os.path.exists('bad.txt') else 0)"
    )
    spec = {"autoMerge": False, "requiredChecks": [check], "batchSize": 4}
    await start(reconciler, git_rig, rig_name, **spec)
    handle = await reconciler.running(Refinery, "default", "refinery")
    # A first branch holds the queue (tested, waiting for approval) while the four are queued and approved.
    git_rig.push_branch("polecat/first", {"first.txt": "1\n"})
    await handle.execute_update("enqueue", [{"branch": "polecat/first"}])
    await wait_until(lambda: runs.exists(), "the first branch's checks")
    branches = {"polecat/a": "a.txt", "polecat/b": "b.txt", "polecat/bad": "bad.txt", "polecat/d": "d.txt"}
    for branch, path in branches.items():
        git_rig.push_branch(branch, {path: "x\n"})
        await handle.execute_update("enqueue", [{"branch": branch}])
        await handle.signal("approve", branch)
    await handle.signal("approve", "polecat/first")
    done = await queue_settles(reconciler, merged=4)

    files = git_rig.files_on("main")
    assert {"first.txt", "a.txt", "b.txt", "d.txt"} <= set(files) and "bad.txt" not in files
    assert done.status is not None
    outcomes = {landing.branch: landing.outcome for landing in done.status.recent}
    assert outcomes == {
        "polecat/first": "Merged",
        "polecat/a": "Merged",
        "polecat/b": "Merged",
        "polecat/bad": "Rejected",
        "polecat/d": "Merged",
    }
    # first; then the four at once (red), a+b (green), bad+d (red), bad alone (red), d alone (green).
    assert len(runs.read_text().splitlines()) == 6
    assert "bad" not in Repo(git_rig.remote).git.log("--format=%s", "main")


async def test_a_rig_has_one_refinery(reconciler: Reconciler, git_rig: GitRig, rig_name: str) -> None:
    """A second Refinery for the same rig is refused, naming the first, up front and when applied at once."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    first, second, third = (
        parse_resource(refinery_manifest(name, rig_name)) for name in ("first", "second", "third")
    )
    assert await reconciler.apply(first) == "created"
    assert await reconciler.problems([second]) == [
        f"Refinery default/second: spec.rigRef: Rig {rig_name!r} already has a Refinery (default/first); "
        "a rig has one"
    ]
    await reconciler.delete(Refinery, "default", "first")
    outcomes = await asyncio.gather(*(reconciler.apply(r) for r in (second, third)), return_exceptions=True)
    refused = [outcome for outcome in outcomes if isinstance(outcome, InvalidResource)]
    assert len(refused) == 1 and "already has a Refinery" in str(refused[0])


@pytest.mark.parametrize(
    ("strategy", "subjects"),
    [
        ("merge", ["Merge polecat/slit into main", "Merge polecat/nux into main"]),
        ("rebase", ["slit: write slit.txt", "nux: write nux.txt"]),
        ("squash", ["polecat/slit: squashed work of polecat/slit", "gt-7: squashed work of polecat nux"]),
    ],
)
async def test_each_strategy_shapes_main_as_it_says(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, strategy: str, subjects: list[str]
) -> None:
    """merge: a merge commit a branch; rebase: the branches' own commits, in a line; squash: one commit a
    branch, naming its bead and polecat."""
    await start(reconciler, git_rig, rig_name, autoMerge=True, strategy=strategy)
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    git_rig.push_branch("polecat/slit", {"slit.txt": "s\n"}, author="slit")
    handle = await reconciler.running(Refinery, "default", "refinery")
    nux = {"branch": "polecat/nux", "polecat": "nux", "namespace": "default", "bead_id": "gt-7"}
    await handle.execute_update("enqueue", [nux])
    await handle.execute_update("enqueue", [{"branch": "polecat/slit"}])
    await queue_settles(reconciler, merged=2)

    assert git_rig.log()[:3] == [*subjects, "initial commit"]
    assert {"nux.txt", "slit.txt"} <= set(git_rig.files_on("main"))
    linear = all(len(commit.parents) <= 1 for commit in Repo(git_rig.remote).iter_commits("main"))
    assert linear == (strategy != "merge")


async def test_a_nudged_polecats_new_commits_land_as_a_new_entry(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A merged polecat nudged with a follow-up commits again; the Refinery takes the new commit as
    a new entry and lands it too."""
    await start(reconciler, git_rig, rig_name, autoMerge=True)
    runs = tmp_path / "runs"
    manifest = polecat_manifest("nux", rig_name, "--runs", str(runs), "--commit", "run-{run}.txt=run {run}")
    await reconciler.apply(polecat(manifest))
    await queue_settles(reconciler, merged=1)
    assert "run-1.txt" in git_rig.files_on("main")

    await reconciler.update(Polecat, "default", "nux", "follow_up", "one more file, please")
    done = await queue_settles(reconciler, merged=2)

    assert {"run-1.txt", "run-2.txt"} <= set(git_rig.files_on("main"))
    assert done.status is not None and [landing.outcome for landing in done.status.recent] == [
        "Merged",
        "Merged",
    ]
    nux = await reconciler.get(Polecat, "default", "nux")
    assert nux.status is not None and nux.status.follow_ups == 1 and merged_condition(nux) == "True"
