"""A polecat's agent in tmux, as the Polecat workflow starts, watches and stops it (`activities.tmux` drives tmux)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from temporalio import activity

from contracts import names
from contracts.beads import Bead
from crds.polecat import Polecat
from crds.usage import Budget, Usage

START_AGENT = "tmux.start_agent"
WATCH_AGENT = names.WATCH_AGENT
STOP_AGENT = "tmux.stop_agent"


class AgentLaunch(BaseModel):
    polecat: Polecat
    worktree: str
    branch: str
    bead: Bead | None = None  # its text, from the rig's BeadStore
    resume: bool = False  # a later attempt: the agent continues its earlier session where it can
    follow_up: str | None = None  # people's follow-ups (nudges) for this run, in its prompt


class AgentSession(BaseModel):
    session: str
    log_file: str
    warnings: list[str] = []
    budget: Budget | None = None  # the watcher's: it returns once the agent has spent it


class RateLimit(BaseModel):
    """A provider's limit too long for the gateway to hold the agent's request: park it until then."""

    provider: str
    until: datetime
    status: int  # the provider's answer: 429, or 529 (overloaded)


class AgentExit(BaseModel):
    """How the agent ended; or, with `over_budget` or `rate_limited` (the agent still running),
    why it must stop."""

    exit_code: int | None
    tail: str
    over_budget: str | None = None
    rate_limited: RateLimit | None = None


class TmuxActivities:
    @activity.defn(name=START_AGENT)
    async def start_agent(self, launch: AgentLaunch) -> AgentSession:
        """Start the polecat's agent in its session, or adopt the running one."""
        raise NotImplementedError

    @activity.defn(name=WATCH_AGENT)
    async def watch_agent(self, session: AgentSession) -> AgentExit:
        """Wait, heartbeating, until the agent's process exits (its status and output tail), or until
        it has spent the session's budget."""
        raise NotImplementedError

    @activity.defn(name=STOP_AGENT)
    async def stop_agent(self, session: AgentSession) -> Usage | None:
        """End the agent's whole process tree, then its session (gone already is done); what the
        agent spent, over all its attempts (None: nothing on record)."""
        raise NotImplementedError
