"""Refinery: the merge queue that lands polecat branches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crds.common import ApiModel, BranchName, DnsName, KindInfo, Resource, Timestamp

RefineryPhase = Literal["Idle", "Processing", "Blocked"]
MergeStrategy = Literal["merge", "rebase", "squash"]
ConflictResolution = Literal["manual", "theirs", "ours"]
QueueEntryStatus = Literal["Pending", "Testing", "Ready", "Conflict"]


class RefinerySpec(ApiModel):
    rig_ref: DnsName = Field(description="Rig to process merges for.")
    target_branch: BranchName = Field("main", description="Branch to merge into.")
    strategy: MergeStrategy = "merge"
    auto_merge: bool = Field(False, description="Merge passing candidates without approval.")
    required_checks: list[str] = Field(
        default_factory=list, max_length=64, description="Checks that must pass."
    )
    conflict_resolution: ConflictResolution = "manual"


class QueueEntry(ApiModel):
    branch: str
    polecat: str | None = None
    bead_id: str | None = None
    status: QueueEntryStatus = "Pending"


class LastMerge(ApiModel):
    branch: str
    timestamp: Timestamp
    commit: str


class MergeConflict(ApiModel):
    branch: str
    files: list[str] = Field(default_factory=list)


class RefineryStatus(ApiModel):
    phase: RefineryPhase = "Idle"
    queue: list[QueueEntry] = Field(default_factory=list)
    last_merge: LastMerge | None = None
    conflicts: list[MergeConflict] = Field(default_factory=list)
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class Refinery(Resource):
    INFO = KindInfo(
        kind="Refinery",
        plural="refineries",
        short_names=["ref"],
        namespaced=True,
        printer_columns=[
            ("Rig", ".spec.rigRef", "string", 0),
            ("Target", ".spec.targetBranch", "string", 0),
            ("Strategy", ".spec.strategy", "string", 0),
            ("Phase", ".status.phase", "string", 0),
            ("Last", ".status.lastMerge.commit", "string", 1),
        ],
    )

    kind: Literal["Refinery"] = "Refinery"
    spec: RefinerySpec
    status: RefineryStatus | None = None
