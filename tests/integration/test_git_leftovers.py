"""What a killed git leaves in a repository does not stop the next polecat or merge.

A worker SIGKILLed while git runs leaves git's lock files (and, in the middle
of `git worktree add`, a half-made worktree). Each test makes that state the
way it happens, with a real git killed or a lock left, then runs the real
activity (in temporalio's ActivityEnvironment) that must get past it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import psutil
from git import Actor, Repo
from temporalio.testing import ActivityEnvironment

from activities.git import GitActivities
from activities.gitlocks import clear_stale_locks
from activities.merges import MergeActivities
from contracts.git import Worktree, WorktreeRequest, worktree_path
from contracts.merges import CheckRequest
from crds.rig import RigSpec
from tests.helpers import GitRig, wait_until
from tests.integration.test_merges import prepare, recipe


def alive_in_group(pgid: int) -> bool:
    """Whether a process of group `pgid` still lives (a zombie, dead but not yet reaped, does not)."""
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def worktree_request(rig: GitRig, branch: str = "polecat/nux") -> WorktreeRequest:
    spec = RigSpec(local_path=str(rig.checkout), git_url=str(rig.remote))
    return WorktreeRequest(
        rig_name="athena", rig=spec, namespace="default", polecat="nux", uid="u1", branch=branch
    )


async def test_a_polecat_branch_is_made_past_a_killed_gits_ref_lock(git_rig: GitRig, tmp_path: Path) -> None:
    """The lock of the polecat's branch, left by a git killed while making it, does not stop the worktree."""
    lock = git_rig.checkout / ".git" / "refs" / "heads" / "polecat" / "nux.lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    git = GitActivities(tmp_path / "home", "test-host")
    made: Worktree = await ActivityEnvironment().run(git.prepare_worktree, worktree_request(git_rig))
    assert Repo(made.path).active_branch.name == "polecat/nux"
    assert not lock.exists()


async def test_a_worktree_half_made_by_a_killed_git_is_made_again(git_rig: GitRig, tmp_path: Path) -> None:
    """`git worktree add` killed midway leaves a locked, half-checked-out worktree; the polecat gets a whole one."""
    files = {f"src/f{n}.txt": f"{n}\n" for n in range(20_000)}  # a checkout slow enough to be cut short
    for name, text in files.items():
        (git_rig.checkout / name).parent.mkdir(exist_ok=True)
        (git_rig.checkout / name).write_text(text)
    repo = Repo(git_rig.checkout)
    repo.git.add("src")
    author = Actor("Test", "test@example.com")
    repo.index.commit("many files", author=author, committer=author)
    repo.git.push("origin", "main")
    home = tmp_path / "home"
    path = worktree_path(home, "athena", "default", "nux", "u1")
    path.parent.mkdir(parents=True)
    add = subprocess.Popen(
        ["git", "worktree", "add", "-b", "polecat/nux", str(path), "main"],
        cwd=git_rig.checkout, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await wait_until(lambda: (path / ".git").exists(), "git to start making the worktree", timeout=60)
    os.killpg(add.pid, signal.SIGKILL)
    add.wait()
    # Its children die a moment later (one busy writing files takes its SIGKILL on return from the
    # kernel); until then the activity rightly answers WorktreeBusy, and Temporal would retry it.
    await wait_until(lambda: not alive_in_group(add.pid), "the killed git's children to be gone")
    admin = git_rig.checkout / ".git" / "worktrees" / path.name
    assert (admin / "locked").read_text().strip() == "initializing"  # what a cut-short add leaves

    git = GitActivities(home, "test-host")
    made: Worktree = await ActivityEnvironment().run(git.prepare_worktree, worktree_request(git_rig))
    tree = Repo(made.path)
    assert tree.active_branch.name == "polecat/nux"
    assert not tree.is_dirty(untracked_files=True)
    assert (Path(made.path) / "src" / "f19999.txt").read_text() == "19999\n"


async def test_the_refinerys_checks_run_past_a_killed_checkouts_lock(git_rig: GitRig, tmp_path: Path) -> None:
    """The check worktree's index.lock, left by a checkout killed midway, does not block later checks."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    request = CheckRequest(
        candidate=await prepare(merges, git_rig, recipe("polecat/nux")),
        commands=["cat nux.txt"],
        timeout=timedelta(seconds=30),
    )
    await ActivityEnvironment().run(merges.check, request)
    lock = tmp_path / "home" / "refinery" / "athena" / "repo.git" / "worktrees" / "check" / "index.lock"
    lock.touch()
    [result] = await ActivityEnvironment().run(merges.check, request)
    assert result.passed and result.output.strip() == "n"
    assert not lock.exists()


def test_a_lock_is_left_alone_while_a_git_runs_in_the_repository(git_rig: GitRig) -> None:
    """A lock file is only removed once no git process works in the repository or its worktrees."""
    git_dir = git_rig.checkout / ".git"
    lock = git_dir / "packed-refs.lock"
    lock.touch()
    reader = subprocess.Popen(
        ["git", "hash-object", "--stdin"], cwd=git_rig.checkout / ".git", stdin=subprocess.PIPE
    )
    try:
        clear_stale_locks(git_dir)
        assert lock.exists()
    finally:
        assert reader.stdin is not None
        reader.stdin.close()
        reader.wait()
    clear_stale_locks(git_dir)
    assert not lock.exists()
