"""The Witness for real: a real Temporal Schedule, real tmux agents, real git, and real local
HTTP (a Slack-style webhook) and SMTP (aiosmtpd) servers that these tests start."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from git import Repo
from temporalio.client import Client, ScheduleHandle, ScheduleIntervalSpec, ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode

from bridge.reconcile import Reconciler
from cli.render import describe
from client.settings import Settings
from crds import InvalidResource, Polecat, Witness, parse_resource
from tests.helpers import (
    GitRig,
    free_port,
    parsed,
    polecat,
    polecat_manifest,
    reach,
    rig,
    rig_manifest,
    wait_until,
    witness_manifest,
)
from tests.integration.conftest import Webhook

pytestmark = pytest.mark.usefixtures("worker")


@dataclass
class Mailbox:
    """What a real SMTP server (aiosmtpd) received."""

    mails: list[tuple[list[str], str, str]] = field(default_factory=list)  # (to, subject, body)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        mail = message_from_bytes(envelope.content if isinstance(envelope.content, bytes) else b"")
        body = mail.get_payload(decode=True)
        text = body.decode() if isinstance(body, bytes) else ""
        self.mails.append((list(envelope.rcpt_tos), str(mail["Subject"]), text))
        return "250 OK"


@pytest.fixture
def mailbox(settings: Settings) -> Iterator[Mailbox]:
    """An SMTP server on a free port, named in the worker's settings (GASTOWN_SMTP_HOST/PORT)."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.smtp_host, settings.smtp_port = "127.0.0.1", controller.port
    yield box
    controller.stop()


async def status_of(reconciler: Reconciler, name: str = "witness") -> Any:
    found = await reconciler.find(Witness, "default", name)
    return found.status if found else None


# The mailbox fixture sets the SMTP server in the settings before the worker is built from them.
@pytest.fixture
def worker(mailbox: Mailbox, worker: None) -> None:
    return worker


async def test_a_stuck_polecat_is_restarted_keeps_its_work_and_people_are_told(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path, webhook: Webhook, mailbox: Mailbox
) -> None:
    """An agent that hangs after committing is found Stuck, restarted once in the same worktree (its
    commit kept), and finishes; Slack and email each get Stuck then Recovered, once each."""
    runs = tmp_path / "runs"
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    notifications = {
        "slack": {"webhookURL": webhook.url, "channel": "#town"},
        "email": {"to": "mayor@town.example"},
    }
    await reconciler.apply(
        parsed(
            Witness, witness_manifest(rig_name, actions={"onStuck": "restart"}, notifications=notifications)
        )
    )
    agent = ["--commit", "work.txt=done", "--say", "working", "--runs", str(runs), "--stall-runs", "1"]
    await reconciler.apply(polecat(polecat_manifest("nux", rig_name, *agent, beadID="gt-1")))
    done = await reach(reconciler, Polecat, "nux", "Succeeded", "Failed", timeout=60)
    assert done.status is not None and done.status.phase == "Succeeded", done.status
    assert done.status.restarts == 1
    assert len(runs.read_text().splitlines()) == 2
    log = Repo(git_rig.checkout).git.log("--format=%s", "polecat/nux").splitlines()
    assert log.count("gt-1: work.txt") == 1  # the first run's commit, kept; the second found it done

    await wait_until(lambda: len(webhook.received) >= 2, "Stuck and Recovered on Slack")
    await wait_until(lambda: len(mailbox.mails) >= 2, "Stuck and Recovered by email")
    kinds = [text.splitlines()[1].split(":")[0] for text in webhook.texts()]
    assert kinds == ["Stuck", "Recovered"]
    assert "restarting it (1 of 3)" in webhook.texts()[0]
    assert {message["channel"] for message in webhook.received} == {"#town"}
    assert [(to, subject.rsplit(" ", 1)[1]) for to, subject, _ in mailbox.mails] == [
        (["mayor@town.example"], "Stuck"),
        (["mayor@town.example"], "Recovered"),
    ]
    status = await wait_until(lambda: _healthy(reconciler), "the witness to see the polecat healthy again")
    assert [(alert.polecat, alert.type) for alert in status.alerts] == [("default/nux", "Recovered")]
    described = describe(await reconciler.get(Witness, "default", "witness"), "ui")
    assert "Alerts:" in described and "default/nux  Recovered" in described


async def test_a_failed_polecat_is_restarted_and_succeeds(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path, webhook: Webhook
) -> None:
    """onFailed restart: a polecat whose agent failed is started again (Failed -> Working, restarts 1),
    succeeds, and gains the Restarted condition; Slack gets Failed then Recovered."""
    runs = tmp_path / "runs"
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    notifications = {"slack": {"webhookURL": webhook.url}}
    await reconciler.apply(
        parsed(
            Witness, witness_manifest(rig_name, actions={"onFailed": "restart"}, notifications=notifications)
        )
    )
    agent = ["--commit", "fix.txt=fixed", "--runs", str(runs), "--fail-runs", "1"]
    await reconciler.apply(polecat(polecat_manifest("dag", rig_name, *agent, beadID="gt-4")))

    async def succeeded() -> Polecat | None:
        found = await reconciler.find(Polecat, "default", "dag")
        return found if found and found.status and found.status.phase == "Succeeded" else None

    done = await wait_until(succeeded, "the restarted polecat to succeed", 60)
    assert done.status is not None and done.status.restarts == 1 and done.status.exit_code == 0
    restarted = {c.type: c for c in done.status.conditions}["Restarted"]
    assert (restarted.status, restarted.reason) == ("True", "Failed")
    assert "restarted by Witness default/witness (1 of 3)" in restarted.message
    assert len(runs.read_text().splitlines()) == 2
    await wait_until(lambda: len(webhook.received) >= 2, "Failed and Recovered on Slack")
    assert [text.splitlines()[1].split(":")[0] for text in webhook.texts()] == ["Failed", "Recovered"]


async def _healthy(reconciler: Reconciler) -> Any:
    status = await status_of(reconciler)
    return status if status and status.phase == "Healthy" and status.polecats_monitored == 1 else None


async def test_the_webhook_url_stays_out_of_histories_and_statuses(
    client: Client,
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    webhook: Webhook,
    settings: Settings,
) -> None:
    """The webhook URL is a credential: the workflow, its memo and its status carry a digest, never the URL."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(
        parsed(Witness, witness_manifest(rig_name, notifications={"slack": {"webhookURL": webhook.url}}))
    )
    await reconciler.apply(polecat(polecat_manifest("toast", rig_name, "--exit", "3", beadID="gt-2")))
    await wait_until(lambda: webhook.received, "the Failed alert on Slack")
    assert "Failed: polecat default/toast" in webhook.texts()[0]
    shown = await reconciler.find(Witness, "default", "witness")
    assert shown is not None and shown.webhook_url is not None
    assert shown.webhook_url.startswith("stored:sha256:")
    history = await client.get_workflow_handle("witness/default/witness").fetch_history()
    assert "very-secret-token" not in history.to_json()
    stored = settings.home / "secrets" / "witness" / "default" / "witness" / "slack-webhook-url"
    assert stored.read_text() == webhook.url and stored.stat().st_mode & 0o077 == 0


async def test_slack_is_retried_on_5xx_and_timeouts(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, webhook: Webhook
) -> None:
    """A webhook that times out, then answers 503, gets the message on the third try, once."""
    webhook.answers = ["hang", 503]
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(
        parsed(Witness, witness_manifest(rig_name, notifications={"slack": {"webhookURL": webhook.url}}))
    )
    await reconciler.apply(polecat(polecat_manifest("slit", rig_name, "--exit", "1", beadID="gt-3")))
    await wait_until(lambda: webhook.received, "the alert, after the retries", timeout=60)
    assert webhook.attempts == 3 and len(webhook.received) == 1


async def test_the_schedule_follows_the_witness(
    client: Client, reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """One Schedule per Witness: its interval follows the spec, a pause set in the UI stays, a trigger
    checks at once, and deleting the Witness deletes the Schedule and frees the rig for another."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(parsed(Witness, witness_manifest(rig_name, checkInterval="1h")))
    schedule = client.get_schedule_handle("witness/default/witness")

    async def every() -> timedelta | None:
        try:
            intervals = (await schedule.describe()).schedule.spec.intervals
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None  # not made yet
            raise
        return intervals[0].every if intervals else None

    assert await wait_until(every, "the schedule") == timedelta(hours=1)
    described = await schedule.describe()
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    first = await _first_check(reconciler, schedule)

    await schedule.pause(note="paused from the UI")
    await reconciler.apply(parsed(Witness, witness_manifest(rig_name, checkInterval="2h")))
    await wait_until(
        lambda: _interval_is(schedule, timedelta(hours=2)), "the schedule to follow checkInterval"
    )
    assert (await schedule.describe()).schedule.state.paused

    # lastCheck counts whole seconds, and so do the ids of the Schedule's runs: trigger in a later one.
    await wait_until(lambda: datetime.now(UTC) >= first + timedelta(seconds=1), "the next second")
    await schedule.trigger()
    await wait_until(
        lambda: _checked(reconciler, after=first), "a triggered check, though the schedule is paused"
    )

    await reconciler.delete(Witness, "default", "witness")
    with pytest.raises(RPCError) as gone:
        await schedule.describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    await reconciler.apply(parsed(Witness, witness_manifest(rig_name, name="another")))


async def test_a_witness_terminated_in_the_ui_and_applied_again_checks_at_once(
    client: Client, reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """Its workflow terminated from the Temporal UI, the Witness's Schedule is left behind, with its
    run waiting for an answer; applied again, the Witness takes that Schedule over and checks at
    once, not an hour later."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    manifest = witness_manifest(rig_name, checkInterval="1h")
    await reconciler.apply(parsed(Witness, manifest))
    schedule = client.get_schedule_handle("witness/default/witness")
    first = await _first_check(reconciler, schedule)

    await client.get_workflow_handle("witness/default/witness").terminate("from the UI")
    # The Schedule's runs are named by the second: take it over in a later one.
    await wait_until(lambda: datetime.now(UTC) >= first + timedelta(seconds=1), "the next second")
    await reconciler.apply(parsed(Witness, manifest))
    await _first_check(reconciler, schedule)
    assert (await schedule.describe()).schedule.spec.intervals[0].every == timedelta(hours=1)


async def _first_check(reconciler: Reconciler, schedule: ScheduleHandle) -> datetime:
    """The time of the Witness's first check, made when its Schedule is taken; or fail saying what
    the Schedule did."""
    try:
        checked: datetime = await wait_until(lambda: _checked(reconciler), "the first check")
    except AssertionError as error:
        info = (await schedule.describe()).info
        raise AssertionError(
            f"{error}; the Schedule ran {info.recent_actions}, runs {info.running_actions}"
        ) from None
    return checked


async def _checked(reconciler: Reconciler, after: Any = None) -> Any:
    status = await status_of(reconciler)
    if status is None or status.last_check is None or (after is not None and status.last_check <= after):
        return None
    return status.last_check


async def _interval_is(schedule: Any, wanted: timedelta) -> bool:
    intervals: list[ScheduleIntervalSpec] = (await schedule.describe()).schedule.spec.intervals
    return bool(intervals) and intervals[0].every == wanted


async def test_a_rig_has_one_witness(reconciler: Reconciler, git_rig: GitRig, rig_name: str) -> None:
    """A second Witness for a rig is refused, naming the first; so is one for a rig that does not exist;
    the webhook URL must be http(s)."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(parsed(Witness, witness_manifest(rig_name)))
    second = parse_resource(witness_manifest(rig_name, name="second"))
    problems = await reconciler.problems([second])
    assert problems == [
        f"Witness default/second: spec.rigRef: Rig {rig_name!r} already has a Witness (default/witness); a rig has one"
    ]
    nowhere = parse_resource(witness_manifest("atlantis", name="third"))
    assert await reconciler.problems([nowhere]) == [
        "Witness default/third: spec.rigRef: Rig 'atlantis' not found"
    ]
    with pytest.raises(InvalidResource, match=r"webhookURL.*http"):
        parse_resource(
            witness_manifest(rig_name, notifications={"slack": {"webhookURL": "file:///etc/passwd"}})
        )
