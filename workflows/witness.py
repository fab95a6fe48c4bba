"""The Witness: a rig's health monitor, `witness/<namespace>/<name>`.

Two parts, like the BeadStore, so the timer is one people can see, pause and
trigger in the Temporal UI:

- `WitnessWorkflow`, the entity: holds the spec, the status and what it has
  already told people; owns the Schedule (created, retimed, deleted with the
  resource) and runs each check;
- a Schedule with the same id, every checkInterval, whose runs
  (`WitnessTick`) ask for a check and wait for its summary (their result in
  the UI). A run lasts as long as its check, so the Schedule's overlap policy
  (skip) skips a check that would overlap another.

A check: one activity lists the rig's polecats (one visibility query) with
how long each has been quiet; the workflow judges each one:

- Stuck: Working, past its startup grace, and quiet for stuckThreshold;
- Failed: phase Failed;
- Recovered: was Stuck or Failed, and is neither any more.

Each change of verdict is one alert, one Kubernetes Event and one
notification, never one per check. Actions (restart, terminate) are decided
here, on a polecat read again right before, and sent as a `remedy` keyed on
the polecat's run (uid) and attempt, so an order never hits another run.

Phase: Active until the first check; then Healthy when the last check found
no polecat stuck or failed, Degraded when it found one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from contracts import attributes
    from contracts.health import HealthActivities, HealthReport, HealthRequest, PolecatHealth
    from contracts.hosts import HOST_WAIT
    from contracts.notify import MailMessage, NotifyActivities, SlackMessage
    from contracts.status import EventNote, StatusTarget
    from crds.common import parse_duration
    from crds.polecat import MAX_RESTARTS, NOT_RESTARTABLE
    from crds.witness import MAX_ALERTS, AlertType, Witness, WitnessAction, WitnessAlert, WitnessStatus
    from workflows.entity import Entity, EntityState
    from workflows.failures import message_of
    from workflows.history import HISTORY_LIMIT, history_full
    from workflows.hosts import not_taken, on_host
    from workflows.polecat import PolecatWorkflow
    from workflows.polecat_models import Remedy
    from workflows.rig import release_rig
    from workflows.schedule import drop_schedule, keep_schedule

M = TypeVar("M", bound=BaseModel)  # a notification message
TICK = "WitnessTick"
LOOK = timedelta(minutes=1)
# Checks of runs that began before hosts read every local polecat in one look, on any worker.
READS_EACH_HOST = "witness-reads-each-host"
# Notifications are retried with backoff for about an hour, then given up (and said so in the status).
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
    non_retryable_error_types=["NotificationRefused"],
)


class Watched(BaseModel):
    """A polecat the Witness has alerted on: which run, the latest alert, the attempt last acted on."""

    key: str  # `<namespace>/<name>`
    uid: str | None
    alert: WitnessAlert
    acted: int | None = None  # status.restarts of the polecat when the Witness last acted on it


class WitnessState(EntityState):
    status: WitnessStatus = Field(default_factory=WitnessStatus)
    scheduled_every: timedelta | None = None  # the interval the Schedule has
    watched: list[Watched] = Field(default_factory=list)
    waiting: list[str] = Field(default_factory=list)  # ticks (workflow ids) waiting for a check
    hosts_seen: dict[str, datetime] = Field(default_factory=dict)  # when each host last answered a look


class WitnessInput(BaseModel):
    witness: Witness
    state: WitnessState | None = None
    history_limit: int = HISTORY_LIMIT
    status_target: StatusTarget | None = None


@workflow.defn(name=TICK)
class WitnessTickWorkflow:
    """One run of a Witness's Schedule: ask for a check, return its summary."""

    def __init__(self) -> None:
        self.summary: str | None = None

    @workflow.signal
    def checked(self, summary: str) -> None:
        self.summary = summary

    @workflow.run
    async def run(self, witness_id: str) -> str:
        witness = workflow.get_external_workflow_handle(witness_id)
        try:
            await witness.signal("check_due", workflow.info().workflow_id)
        except FailureError:
            return f"{witness_id} does not run: no check"
        await workflow.wait_condition(lambda: self.summary is not None)
        assert self.summary is not None
        return self.summary


@workflow.defn(name="Witness")
class WitnessWorkflow(Entity[Witness, WitnessState]):
    RESOURCE_FIELD = "witness"
    SPEC_MEMO_ALWAYS_BEFORE, PHASE_ATTRIBUTE_BEFORE = True, "set"

    @workflow.init
    def __init__(self, input: WitnessInput) -> None:
        super().__init__(input, WitnessState())
        self.status_target = input.status_target
        self.notifying: set[asyncio.Task[None]] = set()
        self.reads_hosts = False  # this run reads each host on its own (READS_EACH_HOST)

    @property
    def witness(self) -> Witness:
        return self.resource

    @workflow.signal
    def check_due(self, tick: str) -> None:
        """From a run of the Schedule (or anyone: the Temporal UI can send it with any id)."""
        self.state.waiting.append(tick)

    @workflow.run
    async def run(self, input: WitnessInput) -> None:
        # Every run publishes first: runs continued as new by earlier versions began with the memo
        # their first run started with (tests/data/histories).
        self.begin(publish=True)
        while True:
            await workflow.wait_condition(
                lambda: (
                    self.deleted
                    or self._retime()
                    or bool(self.state.waiting)
                    or history_full(input.history_limit)
                )
            )
            if self.deleted:
                await drop_schedule()
                await self._answer("the Witness was deleted")
                await release_rig("Witness", self.witness.spec.rig_ref, self._key())
                return
            if self._retime():
                await self._schedule()
            elif self.state.waiting:
                await self._answer(await self._check())
            else:
                await self.roll_over(input, settled=lambda: not self.notifying)

    # --- the schedule ---------------------------------------------------------------

    def _every(self) -> timedelta:
        return parse_duration(self.witness.spec.check_interval)

    def _retime(self) -> bool:
        return self.state.scheduled_every != self._every()

    async def _schedule(self) -> None:
        every = self._every()
        spec = self.witness.spec
        await keep_schedule(
            TICK,
            every,
            f"checks the polecats of rig {spec.rig_ref} every {spec.check_interval}",
            first=self.state.scheduled_every is None,
        )
        self.state.scheduled_every = every

    async def _answer(self, summary: str) -> None:
        """Tell every waiting tick how the check went (a tick that gave up is not told)."""
        waiting, self.state.waiting = self.state.waiting, []

        async def tell(tick: str) -> None:
            with contextlib.suppress(FailureError):
                await workflow.get_external_workflow_handle(tick).signal(WitnessTickWorkflow.checked, summary)

        await asyncio.gather(*(tell(tick) for tick in waiting))

    # --- a check ----------------------------------------------------------------------

    async def _check(self) -> str:
        spec = self.witness.spec
        watched = {entry.key: entry for entry in self.state.watched}
        status = self.state.status
        request = HealthRequest(
            rig=spec.rig_ref, quiet_after=parse_duration(spec.stuck_threshold), watching=sorted(watched)
        )
        self.reads_hosts = workflow.patched(READS_EACH_HOST)
        try:
            report = await self._observe(request.model_copy(update={"by_host": self.reads_hosts}))
            if self.reads_hosts:
                await self._read_hosts(report, request)
        except ActivityError as error:
            status.last_check = workflow.now()
            status.message = f"the check could not see the rig's polecats: {message_of(error)}"
            self.publish()
            return status.message
        polecats = {polecat.key: polecat for polecat in report.notable}
        await self._recheck_before_acting(polecats, watched)
        now = workflow.now()
        alerts: list[WitnessAlert] = []
        stuck = 0
        for key in sorted(set(polecats) | set(watched)):
            polecat = polecats.get(key)
            entry = _entry_of(polecat, watched)
            if entry is None:
                watched.pop(key, None)  # deleted, or an alert about an earlier run of the name
            if polecat is None or polecat.phase == "Terminated":
                continue  # a terminated polecat keeps its last alert
            verdict = self._verdict(polecat, now)
            stuck += verdict == "Stuck"
            remedy = self._remedy(polecat, verdict, entry)
            alert = self._alert(polecat, verdict, entry, remedy, now)
            if alert is not None:
                alerts.append(alert)
                entry = watched[key] = Watched(
                    key=key, uid=polecat.uid, alert=alert, acted=entry.acted if entry else None
                )
            if remedy is not None and entry is not None:
                entry.acted = polecat.restarts
                await self._send(polecat, remedy)
        self.state.watched = _bounded(watched)
        status.last_check = now
        status.polecats_monitored = report.monitored
        status.polecats_failed = report.failed
        status.polecats_stuck = stuck
        status.polecats_healthy = max(report.monitored - report.failed - stuck, 0)
        status.alerts = [entry.alert for entry in self.state.watched]
        status.message = (
            f"{report.monitored} polecats: {status.polecats_healthy} healthy, {stuck} stuck, "
            f"{report.failed} failed"
        )
        self.set_phase(
            "Healthy" if stuck + report.failed == 0 else "Degraded", *(_event(alert) for alert in alerts)
        )
        if alerts:
            self._notify(alerts)
        return status.message + (f"; {len(alerts)} new alerts" if alerts else "")

    async def _observe(self, request: HealthRequest, **options: Any) -> HealthReport:
        report: HealthReport = await workflow.execute_activity_method(
            HealthActivities.observe,
            request,
            start_to_close_timeout=LOOK,
            retry_policy=RetryPolicy(maximum_attempts=3),
            **options,
        )
        return report

    async def _read_hosts(self, report: HealthReport, request: HealthRequest) -> None:
        """The progress of each host's polecats, read on that host; the polecats of a host with no
        worker count as quiet since it last answered, so they turn Stuck after stuckThreshold."""
        seen = self.state.hosts_seen
        for host in set(seen) - set(report.hosts):
            del seen[host]  # none of the rig's working polecats is there now

        async def read(host: str) -> HealthReport:
            try:
                part = await self._observe(request.model_copy(update={"host": host}), **on_host(host))
            except ActivityError as error:
                if not not_taken(error):
                    raise
                since = seen.setdefault(host, workflow.now() - HOST_WAIT)
                return await self._observe(request.model_copy(update={"host": host, "quiet_since": since}))
            seen[host] = workflow.now()
            return part

        notable = {polecat.key: polecat for polecat in report.notable}
        for part in await asyncio.gather(*(read(host) for host in report.hosts)):
            notable.update((polecat.key, polecat) for polecat in part.notable)
        report.notable = list(notable.values())

    async def _recheck_before_acting(
        self, polecats: dict[str, PolecatHealth], watched: dict[str, Watched]
    ) -> None:
        """Read again, from their own workflows, the polecats an action is due for; drop those gone."""
        now = workflow.now()
        due = [
            key
            for key, polecat in sorted(polecats.items())
            if self._remedy(polecat, self._verdict(polecat, now), _entry_of(polecat, watched)) is not None
        ]
        if not due:
            return
        fresh = await workflow.execute_activity_method(
            HealthActivities.recheck,
            due,
            start_to_close_timeout=LOOK,
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        for polecat in fresh:
            before = polecats[polecat.key]
            same_attempt = (before.uid, before.restarts) == (polecat.uid, polecat.restarts)
            if self.reads_hosts and polecat.quiet_for is None and same_attempt:
                polecat.quiet_for = before.quiet_for  # read on its host a moment ago
        for key in due:
            polecats.pop(key)
        polecats.update({polecat.key: polecat for polecat in fresh})

    def _verdict(self, polecat: PolecatHealth, now: datetime) -> AlertType | None:
        if polecat.phase == "Failed":
            return "Failed"
        quiet = self._quiet(polecat, now)
        if quiet is None or polecat.working_since is None:
            return None
        spec = self.witness.spec
        past_grace = now - polecat.working_since >= parse_duration(spec.startup_grace)
        return "Stuck" if past_grace and quiet >= parse_duration(spec.stuck_threshold) else None

    @staticmethod
    def _quiet(polecat: PolecatHealth, now: datetime) -> timedelta | None:
        """How long a Working polecat has shown nothing, counted from its current attempt at most."""
        if polecat.phase != "Working" or polecat.quiet_for is None or polecat.working_since is None:
            return None
        return min(timedelta(seconds=polecat.quiet_for), now - polecat.working_since)

    def _wanted(self, verdict: AlertType | None) -> WitnessAction:
        """What the spec says to do about a verdict (onStuck, else onFailed)."""
        actions = self.witness.spec.actions
        return actions.on_stuck if verdict == "Stuck" else actions.on_failed

    def _remedy(
        self, polecat: PolecatHealth, verdict: AlertType | None, entry: Watched | None
    ) -> Remedy | None:
        """The action due on a polecat in trouble, if any and not already taken on this attempt."""
        if verdict is None or (entry is not None and entry.acted == polecat.restarts):
            return None
        wanted = self._wanted(verdict)
        order = {"uid": polecat.uid, "attempt": polecat.restarts, "reason": verdict}
        if wanted == "terminate":
            return Remedy(
                **order, action="terminate", message=f"terminated by Witness {self._key()}: {verdict}"
            )
        if wanted != "restart" or (verdict == "Failed" and polecat.reason in NOT_RESTARTABLE):
            return None
        if polecat.restarts < MAX_RESTARTS:
            attempt = f"{polecat.restarts + 1} of {MAX_RESTARTS}"
            return Remedy(
                **order, action="restart", message=f"restarted by Witness {self._key()} ({attempt})"
            )
        if verdict == "Stuck":  # escalate: leave it Failed
            return Remedy(
                **order,
                action="fail",
                message=f"no progress, and already restarted {MAX_RESTARTS} times: given up by Witness {self._key()}",
            )
        return None

    def _alert(
        self,
        polecat: PolecatHealth,
        verdict: AlertType | None,
        entry: Watched | None,
        remedy: Remedy | None,
        now: datetime,
    ) -> WitnessAlert | None:
        """The new alert if the verdict changed: Stuck, Failed, or Recovered from either."""
        before = entry.alert.type if entry else None
        troubled = before in ("Stuck", "Failed")
        if verdict == before or (verdict is None and not troubled):
            return None
        bead = f" (bead {polecat.bead_id})" if polecat.bead_id else ""
        if verdict == "Stuck":
            quiet = self._quiet(polecat, now) or timedelta()
            since = now - quiet
            message = f"no progress for {_duration(quiet)}{bead}"
        elif verdict == "Failed":
            since = polecat.completion_time or now
            message = f"{polecat.reason or 'Failed'}{bead}: {polecat.message}"
        else:
            since = now
            message = f"{polecat.phase}{bead}: no longer {(before or '').lower()}"
        message += "; " + _consequence(polecat, verdict, remedy, self._wanted(verdict))
        return WitnessAlert(polecat=polecat.key, type=verdict or "Recovered", since=since, message=message)

    async def _send(self, polecat: PolecatHealth, remedy: Remedy) -> None:
        handle = workflow.get_external_workflow_handle_for(
            PolecatWorkflow.run, attributes.workflow_id("Polecat", polecat.namespace, polecat.name)
        )
        with contextlib.suppress(FailureError):  # gone since: nothing to act on
            await handle.signal(PolecatWorkflow.remedy, remedy)

    # --- telling people -----------------------------------------------------------------

    def _notify(self, alerts: list[WitnessAlert]) -> None:
        """One message per check that changed anything, to each channel, sent in the background."""
        notifications = self.witness.spec.notifications
        if notifications is None:
            return
        lines = [f"{alert.type}: polecat {alert.polecat}: {alert.message}" for alert in alerts]
        head = f"Witness {self._key()} (rig {self.witness.spec.rig_ref})"
        text = "\n".join(
            [head, *lines[:20], *([f"... and {len(lines) - 20} more"] if len(lines) > 20 else [])]
        )
        sends: list[Coroutine[Any, Any, None]] = []
        if notifications.slack is not None:
            message = SlackMessage(
                witness=self._key(),
                reference=notifications.slack.webhook_url,
                channel=notifications.slack.channel,
                text=text,
                target=self.status_target,
            )
            sends.append(self._deliver("Slack", NotifyActivities.slack, message))
        if notifications.email is not None:
            subject = f"[gastown] {head}: " + ", ".join(f"{a.polecat} {a.type}" for a in alerts[:3])
            mail = MailMessage(to=notifications.email.to, subject=subject[:200], text=text)
            sends.append(self._deliver("email", NotifyActivities.email, mail))
        for send in sends:
            task = asyncio.create_task(send)
            self.notifying.add(task)
            task.add_done_callback(self.notifying.discard)

    async def _deliver(
        self, channel: str, activity: Callable[[NotifyActivities, M], Awaitable[None]], argument: M
    ) -> None:
        try:
            await workflow.execute_activity_method(
                activity,
                argument,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
            )
        except ActivityError as error:
            self.state.status.message = f"{channel} notification failed: {message_of(error)}"
            self.publish(
                EventNote(reason="NotificationFailed", message=self.state.status.message, type="Warning")
            )

    # --- status ---------------------------------------------------------------------------

    def _key(self) -> str:
        return f"{self.witness.namespace}/{self.witness.name}"


def _entry_of(polecat: PolecatHealth | None, watched: dict[str, Watched]) -> Watched | None:
    """What the Witness holds on this run of the polecat (never an earlier run's alert or action)."""
    entry = watched.get(polecat.key) if polecat else None
    return entry if entry is not None and polecat is not None and entry.uid == polecat.uid else None


def _event(alert: WitnessAlert) -> EventNote:
    kind = "Normal" if alert.type == "Recovered" else "Warning"
    return EventNote(reason=alert.type, message=f"polecat {alert.polecat}: {alert.message}", type=kind)


def _consequence(
    polecat: PolecatHealth, verdict: AlertType | None, remedy: Remedy | None, wanted: str
) -> str:
    """What the Witness does about it, as a person reads it."""
    if verdict is None:
        return f"restarts so far: {polecat.restarts} of {MAX_RESTARTS}" if polecat.restarts else "all well"
    if remedy is not None:
        return {
            "restart": f"restarting it ({polecat.restarts + 1} of {MAX_RESTARTS})",
            "terminate": "terminating it",
            "fail": f"restarted {MAX_RESTARTS} times already: giving up, it will be left Failed",
        }[remedy.action]
    if wanted == "restart" and polecat.reason == "BudgetExceeded":
        return "not restarted: raising its spec.budget continues it"
    if wanted == "restart" and polecat.reason == "ConvoyBudgetExceeded":
        return "not restarted: raising its convoy's spec.budget continues it"
    if wanted == "restart" and polecat.reason in NOT_RESTARTABLE:
        return f"not restarted: {polecat.reason} cannot be mended by a restart"
    if wanted == "restart" and polecat.restarts >= MAX_RESTARTS:
        return f"not restarted: restarted {MAX_RESTARTS} times already"
    return "notified only" if wanted == "notify" else "action already taken"


def _bounded(watched: dict[str, Watched]) -> list[Watched]:
    """Alerts newest first; Recovered ones beyond MAX_ALERTS forgotten (those in trouble always kept)."""
    entries = sorted(watched.values(), key=lambda entry: (entry.alert.since, entry.key), reverse=True)
    troubled = [entry for entry in entries if entry.alert.type != "Recovered"]
    room = max(MAX_ALERTS - len(troubled), 0)
    recovered = [entry for entry in entries if entry.alert.type == "Recovered"][:room]
    kept = {id(entry) for entry in [*troubled, *recovered]}
    return [entry for entry in entries if id(entry) in kept]


def _duration(span: timedelta) -> str:
    """`1h2m3s`, as the spec writes durations."""
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return (
        "".join(f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m")) if value) + f"{seconds}s"
    )
