"""Refinery: the merge queue that lands polecat branches on a rig's target branch."""

from __future__ import annotations

import shlex
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from crds.common import (
    ApiModel,
    BranchName,
    DnsName,
    Duration,
    KindInfo,
    Resource,
    Timestamp,
)

RefineryPhase = Literal["Idle", "Processing", "Blocked"]
MergeStrategy = Literal["merge", "rebase", "squash"]
ConflictResolution = Literal["manual", "theirs", "ours"]
QueueEntryStatus = Literal["Pending", "Testing", "Ready", "Conflict"]
Outcome = Literal["Merged", "Rejected", "Conflict", "Dropped"]

# How many past outcomes `status.recent` keeps (newest first).
RECENT = 20
# On a Refinery, branches approved to land (comma- or space-separated): how a cluster approves.
# Not under `gastown.gastown.io/`: kopf keeps its own state there and ignores changes to it.
APPROVE_ANNOTATION = "refinery.gastown.gastown.io/approve"


def check_argv(command: str) -> list[str]:
    """A check's argv: the command split as a POSIX shell would split words, never run by one."""
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise ValueError(f"cannot be split into words ({error})") from None
    if not argv:
        raise ValueError("must name a program")
    return argv


def _check_command(command: str) -> str:
    check_argv(command)
    return command


CheckCommand = Annotated[str, Field(max_length=4096), AfterValidator(_check_command)]


class RefinerySpec(ApiModel):
    rig_ref: DnsName = Field(description="Rig to process merges for.")
    target_branch: BranchName = Field("main", description="Branch to merge into.")
    strategy: MergeStrategy = Field("merge", description="merge | rebase | squash.")
    auto_merge: bool = Field(False, description="Merge passing candidates without approval.")
    required_checks: list[CheckCommand] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Checks that must pass: each a command (split into words, run without a shell) "
            "in the candidate's worktree; exit 0 passes."
        ),
    )
    conflict_resolution: ConflictResolution = Field("manual", description="manual | theirs | ours.")
    batch_size: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Extension: candidates tested together (stacked, checks run once on the tip; bisected when red)."
        ),
    )
    check_timeout: Duration = Field("30m", description="Extension: how long one check may run.")


class CheckResult(ApiModel):
    command: str
    passed: bool
    exit_code: int | None = None  # None: it could not start, or ran out of time
    output: str = Field("", description="The last lines of its output.")


class QueueEntry(ApiModel):
    branch: str
    polecat: str | None = None
    bead_id: str | None = None
    status: QueueEntryStatus = "Pending"
    namespace: str | None = Field(None, description="Extension: the polecat's namespace.")
    commit: str | None = Field(None, description="Extension: the branch head the polecat reported.")
    approved: bool = Field(False, description="Extension: approved to land (autoMerge false).")
    enqueued_at: Timestamp | None = Field(None, description="Extension: when it joined the queue.")
    checks: list[CheckResult] = Field(
        default_factory=list, description="Extension: its latest check results."
    )
    message: str = Field("", description="Extension: what is happening to it, in words.")


class LastMerge(ApiModel):
    branch: str
    timestamp: Timestamp
    commit: str


class MergeConflict(ApiModel):
    branch: str
    files: list[str] = Field(default_factory=list)


class Landing(ApiModel):
    """Extension: what became of one queue entry."""

    branch: str
    polecat: str | None = None
    bead_id: str | None = None
    outcome: Outcome
    commit: str | None = None
    reason: str = ""
    message: str = ""
    timestamp: Timestamp


class RefineryStatus(ApiModel):
    phase: RefineryPhase = "Idle"
    queue: list[QueueEntry] = Field(default_factory=list)
    last_merge: LastMerge | None = None
    conflicts: list[MergeConflict] = Field(default_factory=list)
    message: str = Field("", description="Extension: what the refinery is doing, in words.")
    merged: int = Field(0, description="Extension: entries landed so far.")
    recent: list[Landing] = Field(
        default_factory=list, description=f"Extension: the last {RECENT} outcomes, newest first."
    )
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class Refinery(Resource):
    INFO = KindInfo(
        kind="Refinery",
        plural="refineries",
        short_names=["ref"],
        namespaced=True,
        initial_phase=RefineryStatus.model_fields["phase"].default,
        printer_columns=[
            ("Rig", ".spec.rigRef", "string", 0),
            ("Target", ".spec.targetBranch", "string", 0),
            ("Strategy", ".spec.strategy", "string", 0),
            ("Phase", ".status.phase", "string", 0),
            ("Merged", ".status.merged", "integer", 0),
            ("Last", ".status.lastMerge.commit", "string", 1),
            ("Message", ".status.message", "string", 1),
        ],
    )

    kind: Literal["Refinery"] = "Refinery"
    spec: RefinerySpec
    status: RefineryStatus | None = None
