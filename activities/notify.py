"""Telling people: a Witness's alerts to Slack (an incoming webhook) and by email (SMTP).

A webhook URL is a credential, so it is passed by reference and read here,
at the last moment, from where it lives:

- a Witness applied with `gastown` (embedded runtime): a file the CLI wrote
  under `$GASTOWN_HOME/secrets/` (mode 0600), beside this worker;
- a Witness CR on a cluster: the CR itself, read from the API server.

Workflows, memos, statuses and logs only ever see a digest of it, and an
error names the webhook's host, never its path. Failures that may pass (a
timeout, 5xx, 429) are raised as retryable, so Temporal retries them with
backoff; a 4xx is final.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.kube import KubeConnection
from client.settings import SmtpSettings
from client.webhooks import webhook_file
from contracts import notify as contract
from contracts.notify import MailMessage, SlackMessage
from contracts.status import StatusTarget
from crds.witness import redacted_url, webhook_reference

SLACK_TIMEOUT = 10.0  # seconds
SMTP_TIMEOUT = 20.0


class NotifyActivities(contract.NotifyActivities):
    def __init__(self, home: Path, connection: KubeConnection, smtp: SmtpSettings) -> None:
        self.home = home
        self.connection = connection
        self.smtp = smtp

    @activity.defn(name=contract.SLACK)
    async def slack(self, message: SlackMessage) -> None:
        """POST `{"channel", "text"}` to the Witness's webhook."""
        url = await self._webhook(message)
        payload: dict[str, Any] = {"text": message.text}
        if message.channel:
            payload["channel"] = message.channel
        where = redacted_url(url)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT)) as session,
                session.post(url, json=payload) as response,
            ):
                answer = (await response.text())[:200]
        except (aiohttp.ClientError, TimeoutError) as error:
            # Not the error's own text: it may carry the URL.
            raise ApplicationError(
                f"Slack webhook {where} did not answer ({type(error).__name__})", type="NotificationFailed"
            ) from None
        if response.status >= 500 or response.status == 429:
            raise ApplicationError(
                f"Slack webhook {where} answered {response.status}", type="NotificationFailed"
            )
        if response.status >= 400:
            raise ApplicationError(
                f"Slack webhook {where} refused the message: {response.status} {answer}",
                type="NotificationRefused",
                non_retryable=True,
            )
        activity.logger.info("alert posted to Slack webhook %s", where)

    async def _webhook(self, message: SlackMessage) -> str:
        if message.target is not None:
            url = await self._webhook_of_cr(message.target)
        else:
            try:
                url = webhook_file(self.home, message.witness).read_text().strip()
            except FileNotFoundError:
                url = ""
        if not url:
            raise ApplicationError(
                f"no Slack webhook URL is stored for Witness {message.witness} on this worker; apply it again",
                type="NotificationRefused",
                non_retryable=True,
            )
        if webhook_reference(url) != message.reference:
            activity.logger.info(
                "Witness %s has a newer webhook than this alert was sent for", message.witness
            )
        return url

    async def _webhook_of_cr(self, target: StatusTarget) -> str:
        async with self.connection.api() as api:
            try:
                cr = await client.CustomObjectsApi(api).get_namespaced_custom_object(
                    target.group, target.version, target.namespace or "default", target.plural, target.name
                )
            except ApiException as error:
                raise ApplicationError(
                    f"cannot read {target.kind} {target.namespace}/{target.name}: {error.status} {error.reason}",
                    type="NotificationFailed",
                    non_retryable=error.status == 404,
                ) from None
        spec: dict[str, Any] = cast(dict[str, Any], cr).get("spec") or {}
        slack = (spec.get("notifications") or {}).get("slack") or {}
        return str(slack.get("webhookURL") or "")

    @activity.defn(name=contract.EMAIL)
    async def email(self, message: MailMessage) -> None:
        """Send the alert to `notifications.email.to` through the worker's SMTP server."""
        if not self.smtp.host:
            raise ApplicationError(
                "email notifications need an SMTP server: set GASTOWN_SMTP_HOST on the worker",
                type="NotificationRefused",
                non_retryable=True,
            )
        mail = EmailMessage()
        mail["From"] = self.smtp.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail.set_content(message.text)
        try:
            await asyncio.to_thread(self._send, mail)
        except smtplib.SMTPRecipientsRefused:
            raise ApplicationError(
                f"SMTP server {self.smtp.host} refused the recipient {message.to}",
                type="NotificationRefused",
                non_retryable=True,
            ) from None
        except smtplib.SMTPResponseException as error:
            raise ApplicationError(
                f"SMTP server {self.smtp.host} answered {error.smtp_code}",
                type="NotificationFailed" if error.smtp_code < 500 else "NotificationRefused",
                non_retryable=error.smtp_code >= 500,
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise ApplicationError(
                f"SMTP server {self.smtp.host}:{self.smtp.port}: {type(error).__name__}",
                type="NotificationFailed",
            ) from None
        activity.logger.info("alert mailed to %s", message.to)

    def _send(self, mail: EmailMessage) -> None:
        assert self.smtp.host is not None
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=SMTP_TIMEOUT) as smtp:
            if self.smtp.starttls:
                smtp.starttls()
            if self.smtp.username:
                password = (
                    Path(self.smtp.password_file).read_text().strip() if self.smtp.password_file else ""
                )
                smtp.login(self.smtp.username, password)
            smtp.send_message(mail)
