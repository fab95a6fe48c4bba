"""The Refinery survives a worker killed at any step of a merge: merged exactly once, main only on tested commits.

The worker runs as a process group of its own and is killed with SIGKILL,
children and all, as a crashed machine would be. Where it is killed is
chosen with real git hooks and a real check command: each blocks once,
when armed, and says it got there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from git import Repo

from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import Refinery
from tests.helpers import (
    WORKER_COMMAND,
    GitRig,
    python_check,
    reach,
    refinery,
    rig,
    rig_manifest,
    terminate_running,
    wait_until,
    worker_env,
)

# Blocks forever, once, if its `armed-<name>` file exists (renamed to `reached-<name>`: it got there).
BLOCK_ONCE = """
import os, pathlib, sys, time
here = pathlib.Path({here!r})
name = {name!r}
try:
    os.rename(here / f"armed-{{name}}", here / f"reached-{{name}}")
except FileNotFoundError:
    pass
else:
    while True:
        time.sleep(1)
"""

HOOK = (
    """#!{python}
import sys
name = {name!r}
if name.endswith("-receive") and "refs/heads/main" not in sys.stdin.read().split():
    sys.exit(0)  # only pushes to main stop here
"""
    + BLOCK_ONCE
)

# The check: stops where armed; otherwise records the commit it passed.
CHECK = (
    BLOCK_ONCE
    + """
import subprocess
head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
with open(here / "passed", "a") as passed:
    passed.write(head)
"""
)

POINTS = {
    "check": "while the checks run",
    "post-merge": "after the merge commit is made",
    "pre-receive": "before the push reaches main",
    "post-receive": "after the push has moved main",
}


@pytest.fixture
def control(tmp_path: Path) -> Path:
    """Where the hooks and the check keep their armed/reached files; the hooks themselves are in it."""
    here = tmp_path / "control"
    here.mkdir()
    for name in ("post-merge", "pre-receive", "post-receive"):
        hook = here / name
        hook.write_text(HOOK.format(python=sys.executable, name=name, here=str(here)))
        hook.chmod(0o755)
    (here / "gitconfig").write_text(f"[core]\n\thooksPath = {here}\n")
    return here


@pytest.fixture
def workers(
    settings: Settings, control: Path, reconciler: Reconciler
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes on a queue of their own, each its own process group; all killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start_worker(settings: Settings, control: Path, started: list[subprocess.Popen[bytes]]) -> None:
    env = worker_env(
        settings.temporal_address, f"{settings.task_queue}-sub", settings.home, settings.tmux_socket
    )
    env["GIT_CONFIG_GLOBAL"] = str(control / "gitconfig")  # the hooks, for this worker's git only
    started.append(
        subprocess.Popen(
            WORKER_COMMAND,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )


@pytest.mark.parametrize("point", list(POINTS))
async def test_a_merge_survives_a_worker_killed(
    point: str,
    settings: Settings,
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    control: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    """Killed at each step of a merge, a new worker finishes it: merged once, main only ever on a tested commit."""
    sub = Reconciler(reconciler.client, f"{settings.task_queue}-sub")
    remote = Repo(git_rig.remote)
    remote.git.config("core.logAllRefUpdates", "always")  # the remote's reflog: every commit main was on
    start_worker(settings, control, workers)
    try:
        await sub.apply(rig(rig_manifest(rig_name, git_rig)))
        check = python_check(CHECK.format(here=str(control), name="check"))
        # git runs the post-merge hook where it merges in a worktree: with -X theirs (a merge made
        # in the object store alone runs no hook, and its commit is unreferenced until returned).
        resolution = "theirs" if point == "post-merge" else "manual"
        await sub.apply(
            refinery(rig=rig_name, autoMerge=True, requiredChecks=[check], conflictResolution=resolution)
        )
        await reach(sub, Refinery, "refinery", "Idle")
        git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
        (control / f"armed-{point}").touch()
        handle = await sub.running(Refinery, "default", "refinery")
        await handle.execute_update("enqueue", [{"branch": "polecat/nux"}])

        await wait_until(lambda: (control / f"reached-{point}").exists(), f"the merge to get {POINTS[point]}")
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        start_worker(settings, control, workers)

        async def merged() -> Refinery | None:
            found = await sub.find(Refinery, "default", "refinery")
            return (
                found
                if found and found.status and found.status.merged == 1 and not found.status.queue
                else None
            )

        done = await wait_until(merged, "the merge to finish on the new worker", timeout=120)
    finally:
        await terminate_running(reconciler.client, f"{settings.task_queue}-sub")

    assert git_rig.log().count("Merge polecat/nux into main") == 1
    main = git_rig.remote_branches()["main"]
    assert done.status is not None and done.status.last_merge is not None
    assert done.status.last_merge.commit == main
    passed = set((control / "passed").read_text().split())
    moves = remote.git.reflog("show", "--format=%H", "main").split()
    assert moves and set(moves) <= passed  # every commit main was ever on passed the checks
    assert "polecat/nux" not in git_rig.remote_branches()
