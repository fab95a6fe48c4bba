"""`gastown diff polecat NAME`: a polecat's work against the base it started from.

Read from its worktree when that is on this machine (a local polecat of this
home): what the branch changed since it left the base, uncommitted changes
included, so a working agent's edits show as they happen. Otherwise from the
remote its branch was pushed to (a pod's gitRepository, the rig's gitURL, or
its checkout's origin), fetched into a scratch repository. No workflow is
asked, so a diff costs no history event.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from git import GitCommandError, Repo

from contracts.git import worktree_path
from crds import Polecat, Rig


class NoDiff(Exception):
    """The polecat's work cannot be read from here; the message says why."""


def polecat_diff(polecat: Polecat, rig: Rig, home: Path, stat: bool = False) -> str:
    """The diff (or its `--stat` summary) of the polecat's work."""
    branch = (polecat.status.branch if polecat.status else None) or polecat.work_branch
    worktree = worktree_path(home, rig.name, polecat.namespace, polecat.name, polecat.metadata.uid)
    options = ["--stat"] if stat else []
    if polecat.spec.execution_mode == "local" and (worktree / ".git").exists():
        repo = Repo(worktree)
        base = rig.spec.default_branch
        base = f"origin/{base}" if _has_ref(repo, f"refs/remotes/origin/{base}") else base
        return str(repo.git.diff(*options, repo.git.merge_base(base, "HEAD")))
    url, base = _remote_of(polecat, rig)
    if url is None:
        raise NoDiff(
            f"polecat {polecat.name}: its worktree is not on this machine and its rig names no remote "
            "to read the branch from"
        )
    with tempfile.TemporaryDirectory(prefix="gastown-diff-") as scratch:
        repo = Repo.init(scratch, bare=True)
        try:
            repo.git.fetch(
                "--no-tags", "--", url, f"+refs/heads/{base}:refs/base", f"+refs/heads/{branch}:refs/work"
            )
        except GitCommandError as error:
            raise NoDiff(
                f"polecat {polecat.name}: cannot read {branch} from {url}: {_last_line(error)}"
            ) from None
        return str(repo.git.diff(*options, "refs/base...refs/work"))


def _remote_of(polecat: Polecat, rig: Rig) -> tuple[str | None, str]:
    """Where the polecat's branch is pushed, and the base branch there."""
    kubernetes = polecat.spec.kubernetes
    if polecat.spec.execution_mode == "kubernetes" and kubernetes is not None:
        return kubernetes.git_repository, kubernetes.git_branch
    if rig.spec.git_url:
        return rig.spec.git_url, rig.spec.default_branch
    checkout = Path(rig.spec.local_path) if rig.spec.local_path else None
    if checkout is not None and (checkout / ".git").exists():
        remotes = Repo(checkout).remotes
        origin = next((remote for remote in remotes if remote.name == "origin"), None)
        if origin is not None:
            return origin.url, rig.spec.default_branch
    return None, rig.spec.default_branch


def _has_ref(repo: Repo, ref: str) -> bool:
    try:
        repo.git.rev_parse("--verify", "--quiet", ref)
    except GitCommandError:
        return False
    return True


def _last_line(error: GitCommandError) -> str:
    lines = str(error.stderr).strip().splitlines()
    return lines[-1].strip() if lines else str(error)
