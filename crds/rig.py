"""Rig: a project workspace, a git repository plus a beads prefix (cluster-scoped)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from crds.common import ApiModel, BranchName, Condition, HostName, KindInfo, Resource, Timestamp

RigPhase = Literal["Ready", "NotReady"]


class RigSpec(ApiModel):
    git_url: str | None = Field(None, max_length=2048, description="Repository URL.")
    beads_prefix: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9]*$", max_length=16, description="Prefix of bead ids."
    )
    local_path: str | None = Field(
        None, max_length=4096, description="Path of the checkout for local execution."
    )
    default_branch: BranchName = Field("main", description="Default branch.")
    name_pools: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list, max_length=1000, description="Names for polecats."
    )
    host: HostName | None = Field(
        None,
        description="Extension: the host whose worker serves localPath (its GASTOWN_HOST). "
        "Unset: the host whose worker first finds the checkout, as status.host records.",
    )


class RigStatus(ApiModel):
    phase: RigPhase = "NotReady"
    polecat_count: int = 0
    last_sync: Timestamp | None = None
    conditions: list[Condition] = Field(default_factory=list)
    message: str = Field("", description="Extension: why the rig is (not) ready.")
    host: str | None = Field(None, description="Extension: the host that serves localPath.")
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class Rig(Resource):
    INFO = KindInfo(
        kind="Rig",
        plural="rigs",
        short_names=["rg"],
        namespaced=False,
        initial_phase=RigStatus.model_fields["phase"].default,
        printer_columns=[
            ("Phase", ".status.phase", "string", 0),
            ("Prefix", ".spec.beadsPrefix", "string", 0),
            ("Branch", ".spec.defaultBranch", "string", 0),
            ("Polecats", ".status.polecatCount", "integer", 0),
            ("Host", ".status.host", "string", 1),
            ("Path", ".spec.localPath", "string", 1),
            ("URL", ".spec.gitURL", "string", 1),
        ],
    )

    kind: Literal["Rig"] = "Rig"
    spec: RigSpec
    status: RigStatus | None = None

    @property
    def host(self) -> str | None:
        return serving_host(self.spec, self.status)


def serving_host(spec: RigSpec, status: RigStatus | None) -> str | None:
    """The host whose worker serves localPath: the spec's, else the one its check recorded."""
    if not spec.local_path:
        return None
    return spec.host or (status.host if status else None)
