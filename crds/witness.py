"""Witness: health monitoring for the polecats of a rig."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crds.common import ApiModel, DnsName, Duration, KindInfo, Resource, Timestamp

WitnessPhase = Literal["Active", "Degraded", "Healthy"]
WitnessAction = Literal["notify", "restart", "terminate"]
AlertType = Literal["Stuck", "Failed", "Recovered"]


class WitnessActions(ApiModel):
    on_stuck: WitnessAction = "notify"
    on_failed: WitnessAction = "notify"


class SlackNotification(ApiModel):
    webhook_url: str = Field(max_length=2048)
    channel: str | None = Field(None, max_length=256)


class EmailNotification(ApiModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)


class WitnessNotifications(ApiModel):
    slack: SlackNotification | None = None
    email: EmailNotification | None = None


class WitnessSpec(ApiModel):
    rig_ref: DnsName = Field(description="Rig to monitor.")
    check_interval: Duration = Field("30s", description="How often to check.")
    stuck_threshold: Duration = Field("10m", description="When to consider stuck.")
    actions: WitnessActions = Field(default_factory=WitnessActions)
    notifications: WitnessNotifications | None = None


class WitnessAlert(ApiModel):
    polecat: str
    type: AlertType
    since: Timestamp
    message: str = ""


class WitnessStatus(ApiModel):
    phase: WitnessPhase = "Active"
    last_check: Timestamp | None = None
    polecats_monitored: int = 0
    polecats_healthy: int = 0
    polecats_stuck: int = 0
    polecats_failed: int = 0
    alerts: list[WitnessAlert] = Field(default_factory=list)
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class Witness(Resource):
    INFO = KindInfo(
        kind="Witness",
        plural="witnesses",
        short_names=["wit"],
        namespaced=True,
        printer_columns=[
            ("Rig", ".spec.rigRef", "string", 0),
            ("Phase", ".status.phase", "string", 0),
            ("Monitored", ".status.polecatsMonitored", "integer", 0),
            ("Stuck", ".status.polecatsStuck", "integer", 0),
            ("Failed", ".status.polecatsFailed", "integer", 0),
            ("Interval", ".spec.checkInterval", "string", 1),
        ],
    )

    kind: Literal["Witness"] = "Witness"
    spec: WitnessSpec
    status: WitnessStatus | None = None
