"""BeadStore: where a rig's beads come from."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from crds.common import ApiModel, DnsName, Duration, KindInfo, Resource, Timestamp

BeadStorePhase = Literal["Syncing", "Synced", "Error"]
SourceType = Literal["jsonl", "sqlite", "daemon"]


class BeadSource(ApiModel):
    type: SourceType
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="Path to beads data: absolute, or relative to the rig's localPath (.beads/issues.jsonl).",
    )


class BeadFilters(ApiModel):
    status: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=100, description="Only these statuses."
    )
    labels: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=100, description="Only with these labels."
    )


class BeadStoreSpec(ApiModel):
    rig_ref: DnsName = Field(description="Associated rig.")
    sync_interval: Duration = Field("5m", description="How often to sync.")
    source: BeadSource
    filters: BeadFilters | None = None


class SyncError(ApiModel):
    message: str
    timestamp: Timestamp


class BeadStoreStatus(ApiModel):
    phase: BeadStorePhase = "Syncing"
    last_sync: Timestamp | None = None
    issue_count: int = 0
    errors: list[SyncError] = Field(default_factory=list)
    message: str = Field("", description="Extension: what the last sync found, or why it failed.")
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class BeadStore(Resource):
    INFO = KindInfo(
        kind="BeadStore",
        plural="beadstores",
        short_names=["bs"],
        namespaced=True,
        initial_phase=BeadStoreStatus.model_fields["phase"].default,
        printer_columns=[
            ("Rig", ".spec.rigRef", "string", 0),
            ("Type", ".spec.source.type", "string", 0),
            ("Phase", ".status.phase", "string", 0),
            ("Issues", ".status.issueCount", "integer", 0),
            ("Path", ".spec.source.path", "string", 1),
        ],
    )

    kind: Literal["BeadStore"] = "BeadStore"
    spec: BeadStoreSpec
    status: BeadStoreStatus | None = None
