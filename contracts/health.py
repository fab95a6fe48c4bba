"""The Witness's look at its rig's polecats, as the workflow asks for it (`activities.health` looks)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import activity

OBSERVE = "health.observe"
RECHECK = "health.recheck"


class HealthRequest(BaseModel):
    rig: str
    quiet_after: timedelta  # a Working polecat quiet this long is reported in full
    watching: list[str] = Field(default_factory=list)  # `<ns>/<name>`s always reported in full
    # True: local polecats of a host are not read here; the report names their hosts instead.
    by_host: bool = False
    # Only this host's local polecats, their progress read on it (the activity runs on its queue).
    host: str | None = None
    # With `host`: no worker of it answers, so its polecats count as quiet since this time.
    quiet_since: datetime | None = None


class PolecatHealth(BaseModel):
    """One polecat as the Witness judges it."""

    namespace: str
    name: str
    uid: str | None
    phase: str
    bead_id: str | None = None
    restarts: int = 0
    working_since: datetime | None = None  # the current attempt's start
    completion_time: datetime | None = None
    reason: str = ""  # of its latest phase change
    message: str = ""
    quiet_for: float | None = None  # seconds since visible progress; None: not visible from here
    host: str | None = None  # a local polecat's host

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class HealthReport(BaseModel):
    monitored: int = 0  # the rig's polecats, but Terminated ones
    failed: int = 0
    notable: list[PolecatHealth] = Field(default_factory=list)  # Failed, quiet, or watched
    hosts: list[str] = Field(default_factory=list)  # hosts of Working polecats not read (by_host)


class HealthActivities:
    @activity.defn(name=OBSERVE)
    async def observe(self, request: HealthRequest) -> HealthReport:
        """The rig's polecats (or one host's): counts, and in full those Failed, quiet for
        `quiet_after`, or watched."""
        raise NotImplementedError

    @activity.defn(name=RECHECK)
    async def recheck(self, keys: list[str]) -> list[PolecatHealth]:
        """Polecats read again from their own workflows, right before an action: never behind.

        The progress of a polecat on a host is not read again (the look on its host read it)."""
        raise NotImplementedError
