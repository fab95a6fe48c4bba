"""What the town board shows: the town at one moment, read as the CLI reads it (visibility and memos).

One visibility query per kind (rigs, convoys, polecats, refineries, witnesses)
makes a `Town`: no describe per polecat, no second database. A local agent's
last line of output is read from its log file when the board runs on its host.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from activities.tmux import ANSI
from bridge.reconcile import Reconciler
from crds import Convoy, Polecat, Refinery, Rig, Witness
from crds.convoy import CONVOY_LABEL


class PolecatCell(BaseModel):
    key: str  # namespace/name
    name: str
    namespace: str
    rig: str
    phase: str
    bead: str = ""
    bead_title: str = ""
    convoy: str = ""
    since: datetime | None = None  # its latest attempt's start
    last_line: str = ""
    cost: str = ""
    message: str = ""
    follow_ups: int = 0


class ConvoyRow(BaseModel):
    key: str
    name: str
    rig: str
    phase: str
    total: int
    completed: int
    failed: int
    in_progress: int
    cost: str = ""


class QueueRow(BaseModel):
    refinery: str  # namespace/name
    branch: str
    status: str
    polecat: str = ""
    approved: bool = False


class AlertRow(BaseModel):
    witness: str
    polecat: str
    type: str
    since: datetime | None = None
    message: str = ""


class RigRow(BaseModel):
    name: str
    phase: str
    polecats: int


class Town(BaseModel):
    rigs: list[RigRow]
    convoys: list[ConvoyRow]
    polecats: list[PolecatCell]
    queue: list[QueueRow]
    alerts: list[AlertRow]
    refineries: list[str] = []  # namespace/name of each, its queue empty or not


LAST_BYTES = 2048  # of a log file, read each second for its last line


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def last_line(log_file: Path) -> str:
    """The last line of output in the file, without terminal escapes ("" if none or unreadable)."""
    try:
        with log_file.open("rb") as stream:
            stream.seek(0, 2)
            stream.seek(max(0, stream.tell() - LAST_BYTES))
            text = stream.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in ANSI.sub("", text).splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def polecat_cell(polecat: Polecat) -> PolecatCell:
    status = polecat.status
    log_file = status.log_file if status else None
    return PolecatCell(
        key=f"{polecat.namespace}/{polecat.name}",
        name=polecat.name,
        namespace=polecat.namespace,
        rig=polecat.spec.rig,
        phase=status.phase if status else "Pending",
        bead=polecat.spec.bead_id or "",
        bead_title=(status.bead_title if status else None) or "",
        convoy=polecat.metadata.labels.get(CONVOY_LABEL, ""),
        since=(status.last_restart_time or status.start_time) if status else None,
        last_line=last_line(Path(log_file)) if log_file else "",
        cost=status.usage.cost if status and status.usage else "",
        message=_first_line(status.message)[:300] if status else "",
        follow_ups=status.follow_ups if status else 0,
    )


async def read_town(reconciler: Reconciler) -> Town:
    """The town now: every live resource of each kind, in every namespace."""
    rigs = await reconciler.list(Rig, None)
    convoys = await reconciler.list(Convoy, None)
    polecats = await reconciler.list(Polecat, None)
    refineries = await reconciler.list(Refinery, None)
    witnesses = await reconciler.list(Witness, None)
    return Town(
        rigs=[
            RigRow(
                name=rig.name,
                phase=rig.status.phase if rig.status else "NotReady",
                polecats=rig.status.polecat_count if rig.status else 0,
            )
            for rig in rigs
        ],
        convoys=[
            ConvoyRow(
                key=f"{convoy.namespace}/{convoy.name}",
                name=convoy.name,
                rig=convoy.spec.rig_ref,
                phase=convoy.status.phase if convoy.status else "Pending",
                total=convoy.status.total if convoy.status else 0,
                completed=convoy.status.completed if convoy.status else 0,
                failed=convoy.status.failed if convoy.status else 0,
                in_progress=convoy.status.in_progress if convoy.status else 0,
                cost=convoy.status.usage.cost if convoy.status and convoy.status.usage else "",
            )
            for convoy in convoys
        ],
        polecats=[polecat_cell(polecat) for polecat in polecats],
        queue=[
            QueueRow(
                refinery=f"{refinery.namespace}/{refinery.name}",
                branch=entry.branch,
                status=entry.status,
                polecat=entry.polecat or "",
                approved=bool(entry.approved),
            )
            for refinery in refineries
            if refinery.status
            for entry in refinery.status.queue
        ],
        refineries=[f"{refinery.namespace}/{refinery.name}" for refinery in refineries],
        alerts=[
            AlertRow(
                witness=f"{witness.namespace}/{witness.name}",
                polecat=alert.polecat,
                type=alert.type,
                since=alert.since,
                message=_first_line(alert.message or ""),
            )
            for witness in witnesses
            if witness.status
            for alert in witness.status.alerts
        ],
    )
