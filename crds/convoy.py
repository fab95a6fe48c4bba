"""Convoy: a batch of beads worked in parallel."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from crds.common import GROUP, ApiModel, DnsName, FieldError, KindInfo, Resource, Timestamp
from crds.polecat import BeadID, PolecatTemplate
from crds.usage import Budget, Usage

# The label on the polecats a convoy spawned: its name.
CONVOY_LABEL = f"{GROUP}/convoy"

ConvoyPhase = Literal["Pending", "Active", "Completed", "Failed"]


class ConvoySpec(ApiModel):
    description: str | None = Field(None, max_length=1024, description="Human-readable name.")
    tracked_beads: list[BeadID] = Field(
        default_factory=list, max_length=2000, description="Bead ids to track."
    )
    parallelism: int | None = Field(None, gt=0, description="Max concurrent polecats (default unlimited).")
    rig_ref: DnsName | None = Field(None, description="Target rig for spawned polecats.")
    auto_spawn: bool = Field(False, description="Create polecats for beads.")
    polecat_template: PolecatTemplate | None = Field(
        None,
        description=(
            "Extension: how spawned polecats run (every Polecat spec field but rig, beadID and "
            "desiredState); absent, the Polecat defaults."
        ),
    )
    budget: Budget | None = Field(
        None,
        description=(
            "Extension: what all its polecats together may spend; once spent it spawns no more, "
            "stops those working (ConvoyBudgetExceeded) and is Failed."
        ),
    )

    @model_validator(mode="after")
    def _spawnable(self) -> ConvoySpec:
        seen: set[str] = set()
        for index, bead in enumerate(self.tracked_beads):
            if bead in seen:
                raise FieldError(f"trackedBeads[{index}]", f"{bead} is listed twice")
            seen.add(bead)
        if self.auto_spawn and not self.rig_ref:
            raise FieldError("rigRef", "required when autoSpawn is true")
        return self


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
    message: str = Field("", description="Extension: what the convoy is doing, in words.")
    usage: Usage | None = Field(
        None, description="Extension: what its beads' polecats spent, as of their latest transitions."
    )
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class Convoy(Resource):
    INFO = KindInfo(
        kind="Convoy",
        plural="convoys",
        short_names=["cv"],
        namespaced=True,
        initial_phase=ConvoyStatus.model_fields["phase"].default,
        printer_columns=[
            ("Rig", ".spec.rigRef", "string", 0),
            ("Phase", ".status.phase", "string", 0),
            ("Total", ".status.total", "integer", 0),
            ("Done", ".status.completed", "integer", 0),
            ("Failed", ".status.failed", "integer", 0),
            ("Running", ".status.inProgress", "integer", 0),
            ("Cost", ".status.usage.cost", "string", 0),
            ("Description", ".spec.description", "string", 1),
        ],
    )

    kind: Literal["Convoy"] = "Convoy"
    spec: ConvoySpec
    status: ConvoyStatus | None = None
