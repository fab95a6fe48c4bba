"""A polecat's worktree and branch, and a rig's check, as the workflows ask for them (`activities.git` does the git work)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel
from temporalio import activity

from crds.common import short_uid
from crds.rig import RigSpec

PREPARE_WORKTREE = "git.prepare_worktree"
PUBLISH_BRANCH = "git.publish_branch"
CHECK_RIG = "git.check_rig"


class WorktreeRequest(BaseModel):
    rig_name: str
    rig: RigSpec
    namespace: str
    polecat: str
    uid: str
    branch: str


class Worktree(BaseModel):
    path: str
    branch: str
    base: str
    host: str | None = None  # the host it is on (None in histories from before hosts)


class BranchRequest(BaseModel):
    worktree: str
    branch: str


class RigCheck(BaseModel):
    ready: bool = False
    reason: str  # CamelCase, the Ready condition's reason
    message: str
    host: str | None = None  # the host whose worker found the checkout ready


class BranchResult(BaseModel):
    branch: str
    commit: str
    pushed: bool
    own_commits: int | None = None  # commits only this branch has (None in histories from before)


class GitActivities:
    @activity.defn(name=PREPARE_WORKTREE)
    async def prepare_worktree(self, request: WorktreeRequest) -> Worktree:
        """A worktree of the rig's checkout on the polecat's branch, from defaultBranch."""
        raise NotImplementedError

    @activity.defn(name=PUBLISH_BRANCH)
    async def publish_branch(self, request: BranchRequest) -> BranchResult:
        """The branch's head commit, pushed to origin when the rig has one."""
        raise NotImplementedError

    @activity.defn(name=CHECK_RIG)
    async def check_rig(self, rig: RigSpec) -> RigCheck:
        """Whether the rig's checkout (and remote, with a gitURL) is usable, and why not."""
        raise NotImplementedError


def worktree_path(home: Path, rig: str, namespace: str, polecat: str, uid: str | None) -> Path:
    """Where a polecat's worktree lives: one per incarnation (uid), so a re-created
    polecat of the same name never inherits a stale worktree, not even one of another repo."""
    return home / "worktrees" / rig / namespace / f"{polecat}-{short_uid(uid)}"
