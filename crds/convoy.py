"""Convoy: a batch of beads worked in parallel."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crds.common import ApiModel, DnsName, KindInfo, Resource, Timestamp

ConvoyPhase = Literal["Pending", "Active", "Completed", "Failed"]


class ConvoySpec(ApiModel):
    description: str | None = Field(None, max_length=1024, description="Human-readable name.")
    tracked_beads: list[str] = Field(default_factory=list, max_length=2000, description="Bead ids to track.")
    parallelism: int | None = Field(None, gt=0, description="Max concurrent polecats (default unlimited).")
    rig_ref: DnsName | None = Field(None, description="Target rig for spawned polecats.")
    auto_spawn: bool = Field(False, description="Create polecats for beads.")


class ConvoyPolecatRef(ApiModel):
    name: str
    bead_id: str
    phase: str


class ConvoyStatus(ApiModel):
    phase: ConvoyPhase = "Pending"
    total: int = 0
    completed: int = 0
    failed: int = 0
    in_progress: int = 0
    pending: int = 0
    polecats: list[ConvoyPolecatRef] = Field(default_factory=list)
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class Convoy(Resource):
    INFO = KindInfo(
        kind="Convoy",
        plural="convoys",
        short_names=["cv"],
        namespaced=True,
        printer_columns=[
            ("Rig", ".spec.rigRef", "string", 0),
            ("Phase", ".status.phase", "string", 0),
            ("Total", ".status.total", "integer", 0),
            ("Done", ".status.completed", "integer", 0),
            ("Failed", ".status.failed", "integer", 0),
            ("Running", ".status.inProgress", "integer", 0),
            ("Description", ".spec.description", "string", 1),
        ],
    )

    kind: Literal["Convoy"] = "Convoy"
    spec: ConvoySpec
    status: ConvoyStatus | None = None
