"""The Refinery's candidates, checks and landings, as the workflow asks for them (`activities.merges` does the git work)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import activity

from crds.refinery import CheckResult, ConflictResolution, MergeStrategy
from crds.rig import RigSpec

PREPARE = "merge.prepare"
CHECK = "merge.check"
LAND = "merge.land"


class Part(BaseModel):
    """One queued branch in a candidate."""

    branch: str
    head: str | None = None  # the commit taken; pinned when the candidate is prepared
    polecat: str | None = None
    namespace: str | None = None
    bead_id: str | None = None


class Recipe(BaseModel):
    """Everything a candidate is made from; pinned (base and heads set), it always makes the same commit."""

    rig: str
    remote: str = ""  # the URL landed on; found when the candidate is prepared
    target: str
    strategy: MergeStrategy
    resolution: ConflictResolution
    refinery: str  # `<namespace>/<name>`, named in commit messages
    when: datetime  # the commits' author and committer date
    base: str | None = None
    parts: list[Part]


class Candidate(BaseModel):
    recipe: Recipe
    tip: str | None = None  # the commit to test and land; None: no part made it into the stack
    stacked: list[str] = Field(default_factory=list)  # branches in the tip, in order
    conflicts: dict[str, list[str]] = Field(default_factory=dict)  # branch -> conflicting files
    missing: list[str] = Field(default_factory=list)  # branches not on the remote
    already: list[str] = Field(default_factory=list)  # branches the target already holds


class PrepareRequest(BaseModel):
    rig: RigSpec
    recipe: Recipe
    # Stack on this candidate's tip instead of the target's latest commit: it is being landed now,
    # and this one is made meanwhile, to land right after it.
    on: Candidate | None = None


class CheckRequest(BaseModel):
    candidate: Candidate
    commands: list[str]
    timeout: timedelta


class Landed(BaseModel):
    commit: str
    remote_head: str  # what the remote's target branch showed after the push
    pruned: list[str] = Field(default_factory=list)  # landed branches, deleted unless they moved since


class MergeActivities:
    @activity.defn(name=PREPARE)
    async def prepare(self, request: PrepareRequest) -> Candidate:
        """Stack the recipe's branches on the target's latest commit; conflicts and gone branches are left out."""
        raise NotImplementedError

    @activity.defn(name=CHECK)
    async def check(self, request: CheckRequest) -> list[CheckResult]:
        """Run the checks in order in a clean worktree of the candidate; stops at the first that fails."""
        raise NotImplementedError

    @activity.defn(name=LAND)
    async def land(self, candidate: Candidate) -> Landed:
        """Fast-forward the remote's target to the candidate's tip; TargetMoved if it moved since."""
        raise NotImplementedError
