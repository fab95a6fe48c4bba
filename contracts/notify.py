"""A Witness's notifications, as the workflow sends them (`activities.notify` delivers)."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from contracts.status import StatusTarget

SLACK = "notify.slack"
EMAIL = "notify.email"


class SlackMessage(BaseModel):
    witness: str  # `<namespace>/<name>`: whose webhook
    reference: str  # the spec's stand-in for the URL (a digest)
    channel: str | None = None
    text: str
    target: StatusTarget | None = None  # set when the Witness is a CR: the URL is read from it


class MailMessage(BaseModel):
    to: str
    subject: str
    text: str


class NotifyActivities:
    @activity.defn(name=SLACK)
    async def slack(self, message: SlackMessage) -> None:
        """Post to the Witness's Slack webhook, read from where its spec keeps it."""
        raise NotImplementedError

    @activity.defn(name=EMAIL)
    async def email(self, message: MailMessage) -> None:
        """Send through the worker's mail server."""
        raise NotImplementedError
