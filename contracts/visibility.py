"""The visibility watchers of the Rig and the Refinery, as the workflows call them (`activities.visibility` watches)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import activity

WATCH_POLECAT_COUNT = "visibility.watch_polecat_count"
WATCH_SUCCEEDED = "visibility.watch_succeeded"


class CountWatch(BaseModel):
    rig: str
    seen: int  # the count the rig shows
    poll: float = 1.0
    limit: timedelta = timedelta(minutes=5)  # return anyway, so the workflow can roll its history


class SucceededWatch(BaseModel):
    rig: str
    seen: str | None  # digest of what the refinery has; None: answer at once
    poll: float = 1.0
    limit: timedelta = timedelta(minutes=5)  # return anyway, so the workflow can roll its history


class FinishedPolecat(BaseModel):
    """A Succeeded polecat whose branch no refinery has merged yet."""

    namespace: str
    name: str
    uid: str | None
    branch: str
    commit: str | None
    bead_id: str | None


class FinishedPolecats(BaseModel):
    polecats: list[FinishedPolecat] = Field(default_factory=list)

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class VisibilityActivities:
    @activity.defn(name=WATCH_POLECAT_COUNT)
    async def watch_polecat_count(self, watch: CountWatch) -> int:
        """The rig's live polecats, as soon as their number differs from `seen`."""
        raise NotImplementedError

    @activity.defn(name=WATCH_SUCCEEDED)
    async def watch_succeeded(self, watch: SucceededWatch) -> FinishedPolecats:
        """The rig's Succeeded polecats not yet merged, as soon as they differ from `seen`; one query a look."""
        raise NotImplementedError
