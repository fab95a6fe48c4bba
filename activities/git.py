"""Git side effects: a polecat's worktree and branch, the rig's checkout.

GitPython is synchronous, so each activity runs its work in a thread
(`asyncio.to_thread`) and the worker's event loop stays free for the
watchers. Each is idempotent: an existing worktree on the right branch is
adopted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from git import GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gitlocks import clear_stale_locks, file_lock, undo_interrupted_add
from activities.heartbeats import heartbeating
from contracts import git as contract
from contracts.git import BranchRequest, BranchResult, RigCheck, Worktree, WorktreeRequest, worktree_path
from crds.rig import RigSpec
from launch.pod_entrypoint import own_commits

REMOTE_TIMEOUT = 20  # seconds a rig's remote has to answer `git ls-remote`

# Concurrent `git fetch` / `worktree add` on one repository race for the same lock files:
# serialised per repository, across the threads and the workers of this host.
REPO_LOCK = "gastown-worktrees.lock"


def open_checkout(rig: RigSpec) -> Repo:
    """The rig's checkout, or a non-retryable RigNotReady error saying why."""
    if not rig.local_path:
        raise ApplicationError(
            "the rig has no spec.localPath, needed for local execution",
            type="RigNotReady",
            non_retryable=True,
        )
    try:
        return Repo(rig.local_path)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise ApplicationError(
            f"spec.localPath {rig.local_path} is not a git repository",
            type="RigNotReady",
            non_retryable=True,
        ) from None


def _has_origin(repo: Repo) -> bool:
    return any(remote.name == "origin" for remote in repo.remotes)


def _branch_exists(repo: Repo, ref: str) -> bool:
    try:
        repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        return True
    except GitCommandError:
        return False


class GitActivities(contract.GitActivities):
    """Git work of one worker of `host`; worktrees live under `<home>/worktrees/`."""

    def __init__(self, home: Path, host: str) -> None:
        self.home = home
        self.host = host

    @activity.defn(name=contract.PREPARE_WORKTREE)
    @heartbeating
    async def prepare_worktree(self, request: WorktreeRequest) -> Worktree:
        worktree = await asyncio.to_thread(self._prepare_worktree, request)
        worktree.host = self.host
        return worktree

    def _prepare_worktree(self, request: WorktreeRequest) -> Worktree:
        repo = open_checkout(request.rig)
        path = worktree_path(self.home, request.rig_name, request.namespace, request.polecat, request.uid)
        with file_lock(Path(repo.common_dir) / REPO_LOCK):
            clear_stale_locks(Path(repo.common_dir))
            undo_interrupted_add(Path(repo.common_dir), path)
            if (path / ".git").exists():
                return _adopt(repo, path, request.branch)
            base = request.rig.default_branch
            if _has_origin(repo):
                repo.git.fetch("origin", base)
                base = f"origin/{base}"
            if not _branch_exists(repo, base):
                raise ApplicationError(
                    f"branch {base} does not exist in {request.rig.local_path}",
                    type="RigNotReady",
                    non_retryable=True,
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            repo.git.worktree("prune")
            if _branch_exists(repo, f"refs/heads/{request.branch}"):
                # The branch outlived an earlier polecat: keep its commits.
                _release_branch(repo, request.branch)
                repo.git.worktree("add", str(path), request.branch)
            else:
                repo.git.worktree("add", "--no-track", "-b", request.branch, str(path), base)
        return Worktree(path=str(path), branch=request.branch, base=base)

    @activity.defn(name=contract.PUBLISH_BRANCH)
    @heartbeating
    async def publish_branch(self, request: BranchRequest) -> BranchResult:
        return await asyncio.to_thread(_publish_branch, request)

    @activity.defn(name=contract.CHECK_RIG)
    async def check_rig(self, rig: RigSpec) -> RigCheck:
        check = await asyncio.to_thread(_check_rig, rig)
        if check.ready and rig.local_path:
            check.host = self.host  # the checkout is here
        return check


def _adopt(repo: Repo, path: Path, branch: str) -> Worktree:
    """The existing worktree at `path`, if it is this repository's and on `branch`."""
    existing = Repo(path)
    same_repo = Path(existing.common_dir).resolve() == Path(repo.common_dir).resolve()
    current = existing.head.ref.name if not existing.head.is_detached else "(detached)"
    if not same_repo or current != branch:
        raise ApplicationError(
            f"{path} exists but is not a worktree of this rig on {branch} (it is on {current})",
            type="WorktreeConflict",
            non_retryable=True,
        )
    return Worktree(path=str(path), branch=branch, base="(adopted)")


def _release_branch(repo: Repo, branch: str) -> None:
    """Remove an earlier worktree that has `branch` checked out, if it holds nothing uncommitted."""
    holder = None
    for block in repo.git.worktree("list", "--porcelain").split("\n\n"):
        fields = dict(line.split(" ", 1) for line in block.splitlines() if " " in line)
        if fields.get("branch") == f"refs/heads/{branch}":
            holder = fields["worktree"]
    if holder is None or Path(holder).resolve() == Path(repo.working_tree_dir or "").resolve():
        if holder is not None:
            raise ApplicationError(
                f"branch {branch} is checked out in the rig's own checkout {holder}",
                type="WorktreeConflict",
                non_retryable=True,
            )
        return
    if Repo(holder).is_dirty(untracked_files=True):
        raise ApplicationError(
            f"branch {branch} is checked out with uncommitted work in {holder} (an earlier polecat); "
            "commit or remove that work first",
            type="WorktreeConflict",
            non_retryable=True,
        )
    repo.git.worktree("remove", holder)


def _publish_branch(request: BranchRequest) -> BranchResult:
    repo = Repo(request.worktree)
    clear_stale_locks(Path(repo.common_dir))
    commit = repo.head.commit.hexsha
    pushed = False
    if _has_origin(repo):
        try:
            repo.git.push("origin", f"{request.branch}:refs/heads/{request.branch}")
        except GitCommandError as error:
            raise ApplicationError(
                f"push of {request.branch} to origin failed: {error.stderr.strip()[-500:]}",
                type="PushFailed",
            ) from None
        pushed = True
    own = int(repo.git.execute(own_commits(request.branch)))
    return BranchResult(branch=request.branch, commit=commit, pushed=pushed, own_commits=own)


def _check_rig(rig: RigSpec) -> RigCheck:
    if not rig.local_path and not rig.git_url:
        return RigCheck(reason="NoWorkspace", message="neither spec.localPath nor spec.gitURL is set")
    if rig.local_path:
        try:
            repo = open_checkout(rig)
        except ApplicationError as error:
            return RigCheck(reason="CheckoutUnusable", message=str(error.message))
        if not _branch_exists(repo, f"refs/heads/{rig.default_branch}") and not (
            _has_origin(repo) and _branch_exists(repo, f"refs/remotes/origin/{rig.default_branch}")
        ):
            message = f"defaultBranch {rig.default_branch} does not exist in {rig.local_path}"
            return RigCheck(reason="CheckoutUnusable", message=message)
    if rig.git_url:
        problem = _remote_problem(rig.git_url, rig.default_branch)
        if problem:
            return RigCheck(reason="RemoteUnreachable", message=problem)
    where = [
        f"checkout {rig.local_path}" if rig.local_path else "",
        f"remote {rig.git_url}" if rig.git_url else "",
    ]
    return RigCheck(ready=True, reason="RigReady", message=" and ".join(w for w in where if w) + " ready")


def _remote_problem(url: str, branch: str) -> str:
    """Empty if the remote answers (never prompting for credentials); otherwise git's words."""
    environment = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=10",
    }
    try:
        done = subprocess.run(
            # ext:: would run a command from a URL someone typed: never.
            ["git", "-c", "protocol.ext.allow=never", "ls-remote", "--heads", "--", url, branch],
            capture_output=True,
            text=True,
            timeout=REMOTE_TIMEOUT,
            env=environment,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"gitURL {url} did not answer within {REMOTE_TIMEOUT}s"
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        return f"gitURL {url} does not answer: {said[0] if said else f'git exited {done.returncode}'}"
    if not done.stdout.strip():
        return f"defaultBranch {branch} does not exist on {url}"
    return ""
