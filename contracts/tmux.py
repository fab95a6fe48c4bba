"""A polecat's agent in tmux, as the Polecat workflow starts, watches and stops it (`activities.tmux` drives tmux)."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from contracts.beads import Bead
from crds.polecat import Polecat

START_AGENT = "tmux.start_agent"
WATCH_AGENT = "tmux.watch_agent"
STOP_AGENT = "tmux.stop_agent"


class AgentLaunch(BaseModel):
    polecat: Polecat
    worktree: str
    branch: str
    bead: Bead | None = None  # its text, from the rig's BeadStore


class AgentSession(BaseModel):
    session: str
    log_file: str
    warnings: list[str] = []


class AgentExit(BaseModel):
    exit_code: int
    tail: str


class TmuxActivities:
    @activity.defn(name=START_AGENT)
    async def start_agent(self, launch: AgentLaunch) -> AgentSession:
        """Start the polecat's agent in its session, or adopt the running one."""
        raise NotImplementedError

    @activity.defn(name=WATCH_AGENT)
    async def watch_agent(self, session: AgentSession) -> AgentExit:
        """Wait, heartbeating, until the agent's process exits; its status and output tail."""
        raise NotImplementedError

    @activity.defn(name=STOP_AGENT)
    async def stop_agent(self, session: AgentSession) -> None:
        """End the agent's whole process tree, then its session. Gone already is done."""
        raise NotImplementedError
