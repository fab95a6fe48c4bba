"""Witness: health monitoring for the polecats of a rig."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field

from crds.common import ApiModel, DnsName, Duration, KindInfo, Resource, SecretValueError, Timestamp

WitnessPhase = Literal["Active", "Degraded", "Healthy"]
WitnessAction = Literal["notify", "restart", "terminate"]
AlertType = Literal["Stuck", "Failed", "Recovered"]

# How many alerts `status.alerts` shows (newest first): one per polecat in trouble or recovered.
MAX_ALERTS = 50

# A Slack webhook URL is a credential. What workflows, memos and statuses carry instead of it:
# this prefix and a digest of the URL (so a changed URL is a changed spec), never the URL.
STORED_WEBHOOK = "stored:sha256:"
_STORED = re.compile(r"^stored:sha256:[0-9a-f]{16}$")


def _check_webhook(value: object) -> object:
    """Checked before pydantic's own rules, whose errors would show the value: a credential."""
    if not isinstance(value, str):
        raise SecretValueError("must be a string")
    if len(value) > MAX_WEBHOOK:
        raise SecretValueError(f"must be at most {MAX_WEBHOOK} characters")
    if _STORED.match(value):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SecretValueError("must be an http(s) URL such as https://hooks.slack.com/services/...")
    return value


MAX_WEBHOOK = 2048
WebhookURL = Annotated[str, Field(max_length=MAX_WEBHOOK), BeforeValidator(_check_webhook)]


def webhook_reference(url: str) -> str:
    """What stands for a webhook URL outside the secret store: a digest, never the URL."""
    if _STORED.match(url):
        return url
    return STORED_WEBHOOK + hashlib.sha256(url.encode()).hexdigest()[:16]


def redacted_url(url: str) -> str:
    """A URL as it may appear in a log or an error: scheme and host only (its path is the secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…" if parts.hostname else "(a stored webhook)"


class WitnessActions(ApiModel):
    on_stuck: WitnessAction = "notify"
    on_failed: WitnessAction = "notify"


class SlackNotification(ApiModel):
    webhook_url: WebhookURL = Field(
        description="Incoming-webhook URL. A credential: kept out of workflow histories and statuses."
    )
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
    startup_grace: Duration = Field(
        "5m",
        description=(
            "Extension: a polecat is never called stuck before it has worked this long "
            "(since it started or was restarted)."
        ),
    )

    def without_secrets(self) -> WitnessSpec:
        """The spec with its webhook URL replaced by a reference: what may enter a history."""
        slack = self.notifications.slack if self.notifications else None
        if slack is None:
            return self
        stored = slack.model_copy(update={"webhook_url": webhook_reference(slack.webhook_url)})
        assert self.notifications is not None
        notifications = self.notifications.model_copy(update={"slack": stored})
        return self.model_copy(update={"notifications": notifications})


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
    message: str = Field("", description="Extension: what the last check saw, or why it could not.")
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class Witness(Resource):
    INFO = KindInfo(
        kind="Witness",
        plural="witnesses",
        short_names=["wit"],
        namespaced=True,
        initial_phase=WitnessStatus.model_fields["phase"].default,
        printer_columns=[
            ("Rig", ".spec.rigRef", "string", 0),
            ("Phase", ".status.phase", "string", 0),
            ("Monitored", ".status.polecatsMonitored", "integer", 0),
            ("Stuck", ".status.polecatsStuck", "integer", 0),
            ("Failed", ".status.polecatsFailed", "integer", 0),
            ("Interval", ".spec.checkInterval", "string", 1),
            ("Message", ".status.message", "string", 1),
        ],
    )

    kind: Literal["Witness"] = "Witness"
    spec: WitnessSpec
    status: WitnessStatus | None = None

    def without_secrets(self) -> Witness:
        return self.model_copy(update={"spec": self.spec.without_secrets()})

    @property
    def webhook_url(self) -> str | None:
        notifications = self.spec.notifications
        return notifications.slack.webhook_url if notifications and notifications.slack else None
