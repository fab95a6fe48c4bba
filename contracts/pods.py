"""A polecat's pod, as the Polecat workflow starts, watches and deletes it (`activities.pods` talks to the cluster)."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from contracts import names
from contracts.beads import Bead
from contracts.tmux import RateLimit
from crds.polecat import Polecat
from crds.usage import Usage

START_POD = "pods.start_pod"
WATCH_POD = names.WATCH_POD
DELETE_POD = "pods.delete_pod"


class PodLaunch(BaseModel):
    polecat: Polecat
    bead: Bead | None = None
    attempt: int = 0  # restarts and resumes so far: each attempt is a pod of its own
    resume: bool = False  # a later attempt: it goes on from the branch the earlier ones pushed
    spent: Usage | None = None  # by the earlier attempts: the budget covers them too
    follow_up: str | None = None  # people's follow-ups (nudges) for this run, in its prompt


class PodRef(BaseModel):
    name: str
    namespace: str
    uid_label: str  # the polecat's uid, as the pod's label: how the watch selects it


class PodExit(BaseModel):
    """How the pod ended; with `over_budget` or `rate_limited`, why its entrypoint stopped the agent."""

    succeeded: bool
    reason: str
    message: str
    exit_code: int | None = None
    commit: str | None = None
    usage: Usage | None = None  # over all the polecat's attempts, as its pod's gateway counted
    over_budget: str | None = None
    rate_limited: RateLimit | None = None


class PodActivities:
    @activity.defn(name=START_POD)
    async def start_pod(self, launch: PodLaunch) -> PodRef:
        """Create the polecat's pod, or adopt it if it exists (same name, same polecat uid)."""
        raise NotImplementedError

    @activity.defn(name=WATCH_POD)
    async def watch_pod(self, ref: PodRef) -> PodExit:
        """Wait, heartbeating, until the pod ends; phases arrive from a watch, not a polling loop."""
        raise NotImplementedError

    @activity.defn(name=DELETE_POD)
    async def delete_pod(self, ref: PodRef) -> Usage | None:
        """Delete the pod now (grace period 0: its agent is being stopped). Gone already is done.
        What the agent had spent, over all attempts, as its pod's log last said (None: nothing)."""
        raise NotImplementedError
