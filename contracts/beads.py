"""Reading a rig's beads, as the BeadStore and the Polecat workflows ask for it (`activities.beads` reads)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

from crds.beadstore import BeadFilters, BeadSource

SYNC = "beads.sync"
FIND = "beads.find"


class Bead(BaseModel):
    """One beads issue, the fields Gas Town reads; unknown fields are kept aside, not fatal."""

    model_config = ConfigDict(extra="allow")

    id: str
    title: str = ""
    description: str = ""
    acceptance_criteria: str = ""
    status: str = "open"
    priority: int = 2
    issue_type: str = "task"
    labels: list[str] = Field(default_factory=list)
    closed_at: str | None = None


class SyncRequest(BaseModel):
    source: BeadSource
    filters: BeadFilters | None = None
    checkout: str | None = None  # the rig's localPath


class SyncReport(BaseModel):
    """One sync: what was read, and every problem met (bad data) or the reason it could not read (error)."""

    issue_count: int = 0
    problems: list[str] = Field(default_factory=list)
    error: str | None = None


class BeadLookup(BaseModel):
    source: BeadSource  # the rig's BeadStore's
    checkout: str | None  # the rig's localPath
    bead_ids: list[str]


class BeadActivities:
    @activity.defn(name=SYNC)
    async def sync(self, request: SyncRequest) -> SyncReport:
        """Read the store's source: how many beads, and every problem met."""
        raise NotImplementedError

    @activity.defn(name=FIND)
    async def find(self, lookup: BeadLookup) -> list[Bead]:
        """The beads asked for, unfiltered: a closed bead is found, and seen closed."""
        raise NotImplementedError
