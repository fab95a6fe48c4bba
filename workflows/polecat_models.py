"""The Polecat workflow's own models: its input, the state it carries across runs, and what it is sent.

Apart from `workflows/polecat.py` for speed: Temporal's sandbox runs a workflow's module
afresh for every workflow it starts or replays, and pydantic builds a model's validators when its
class is defined. Defined here, passed through the sandbox, they are built once per worker, not
once per polecat (a tenth of a worker's time while hundreds start, by py-spy; docs/benchmarks.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from contracts.pods import PodRef
from contracts.status import StatusTarget
from contracts.tmux import AgentSession, RateLimit
from crds.beadstore import BeadSource
from crds.polecat import DesiredState, Polecat, PolecatStatus
from crds.rig import Rig
from workflows.entity import EntityState
from workflows.follow_ups import FollowUps
from workflows.history import HISTORY_LIMIT


class PolecatInput(BaseModel):
    """What starts (or continues) a polecat: the resource and its rig as applied."""

    polecat: Polecat
    rig: Rig
    # The source of the rig's BeadStore when the polecat was applied; None: the rig has none.
    bead_source: BeadSource | None = None
    state: PolecatState | None = None
    history_limit: int = HISTORY_LIMIT
    # Set when the polecat is a Kubernetes resource: its status goes to the CR too.
    status_target: StatusTarget | None = None


class PolecatState(EntityState):
    """All that continue-as-new carries: the actual state of the polecat."""

    status: PolecatStatus
    desired: DesiredState
    host: str | None = None  # where its worktree is: all its local work goes to this host's queue
    host_lost: HostLost | None = None  # no worker of the host takes its work
    worktree: str | None = None
    session: AgentSession | None = None
    pod: PodRef | None = None
    remedy: Remedy | None = None  # a Witness's order, taken and not yet carried out
    parked: RateLimit | None = None  # stopped for a provider's limit: resumed at its reset
    slot: ProviderSlot | None = None  # of its provider's gate: asked for, or held
    termination: Termination | None = None  # how the polecat was told to stop for good
    follow_ups: FollowUps = Field(default_factory=FollowUps)  # people's nudges, waiting for a run


class HostLost(BaseModel):
    """Since when the polecat's host has taken none of its work, and what the status said before."""

    since: datetime
    waits: int = 0  # tries that timed out so far
    message: str


class ProviderSlot(BaseModel):
    """A slot of a gated provider (`workflows.provider`): asked for, then admitted to, then given back."""

    provider: str
    gate: str | None = None  # which of the provider's gates (one per key); None: not known yet
    cap: int = 0  # as the gate's worker said
    admitted: bool = False

    @property
    def gate_name(self) -> str:
        """The gate's name; a slot asked for before gates were per key is the provider's."""
        return self.gate or self.provider


class Termination(BaseModel):
    """Who ended the polecat, as its Terminated condition says: the spec, the signal, or a Witness."""

    reason: str  # DesiredStateTerminated, TerminateSignal, WitnessTerminated
    message: str


class Remedy(BaseModel):
    """A Witness's order for one run (uid) and one attempt of the polecat.

    An order for another run or an earlier attempt is stale and ignored: an
    action is never carried out on a polecat it was not decided for.
    """

    uid: str | None
    attempt: int  # status.restarts when the order was decided
    action: Literal["restart", "terminate", "fail"]
    reason: str  # a condition reason: Stuck, Failed
    message: str


PolecatState.model_rebuild()
PolecatInput.model_rebuild()


class MergeVerdict(BaseModel):
    """A refinery's word on the polecat's branch, for one run of the polecat (its uid)."""

    uid: str | None  # None: whichever run holds the name (a branch queued by hand)
    merged: bool
    reason: str  # a condition reason: Merged, MergeConflict, ChecksFailed
    message: str
