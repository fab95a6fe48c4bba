"""A convoy's polecats, as the Convoy workflow spawns, watches and removes them (`activities.convoys` does it)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import activity

from crds.convoy import Convoy
from crds.usage import Budget, Usage

SPAWN = "convoy.spawn"
REMOVE = "convoy.remove"
WATCH = "convoy.watch"

WATCH_POLL = 0.5  # seconds between looks at the convoy's polecats: status follows within a second


def holder_prefix(convoy: Convoy) -> str:
    """How the rig knows the names a convoy holds: `convoy/<ns>/<name>#` + the bead."""
    return f"convoy/{convoy.namespace}/{convoy.name}#"


class PolecatRefused(ValueError):
    """The store refused the polecat: the lines say why."""


class SpawnRequest(BaseModel):
    convoy: Convoy  # metadata and spec as applied
    bead_id: str
    kubernetes: bool  # the convoy is a Kubernetes resource: its polecats are too


class PolecatSeen(BaseModel):
    name: str
    bead_id: str
    phase: str
    usage: Usage | None = None  # as of its latest transition (its memo)
    # Which run and attempt it is, and why it failed: for a budget's stop and continuation.
    uid: str | None = None
    restarts: int = 0
    reason: str | None = None


class ConvoySnapshot(BaseModel):
    """What the convoy's beads look like now; equal snapshots mean nothing changed."""

    polecats: list[PolecatSeen] = Field(default_factory=list)
    closed: list[str] = Field(default_factory=list)
    bead_error: str | None = None  # the bead store could not be read
    budget_spent: str | None = None  # the convoy's budget is spent: how, in words

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class WatchRequest(BaseModel):
    namespace: str
    rig: str | None
    checkout: str | None  # the rig's localPath, for a relative bead store path
    beads: list[str]
    seen: str | None  # digest of the snapshot the convoy has; None: answer at once
    poll: float = WATCH_POLL
    budget: Budget | None = None  # the convoy's: the watch says when its polecats have spent it
    limit: timedelta = timedelta(minutes=5)  # return anyway, so the workflow can roll its history


class RemoveRequest(BaseModel):
    namespace: str
    names: list[str]
    kubernetes: bool


class ConvoyActivities:
    @activity.defn(name=SPAWN)
    async def spawn(self, request: SpawnRequest) -> str:
        """Create (or adopt, on a retry) the convoy's polecat for a bead; its name comes from the rig."""
        raise NotImplementedError

    @activity.defn(name=REMOVE)
    async def remove(self, request: RemoveRequest) -> None:
        """Delete the convoy's polecats (which stops their agents); one already gone is done."""
        raise NotImplementedError

    @activity.defn(name=WATCH)
    async def watch(self, request: WatchRequest) -> ConvoySnapshot:
        """The convoy's polecats and closed beads, as soon as they differ from what the convoy has."""
        raise NotImplementedError
