"""Reading beads: a JSONL export, the legacy SQLite database, or a running beads daemon.

Each reader returns a `BeadSnapshot`: the beads that pass the filters, and
what could not be read, counted and described, never raised. Bad data never
stops a sync; only an unreachable source (missing file, dead socket) does,
as `BeadSourceError` with a message a person can act on.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.heartbeats import heartbeating
from client.visibility import rig_bead_store
from contracts import beads as contract
from contracts.beads import Bead, BeadLookup, SyncReport, SyncRequest
from crds.beadstore import BeadFilters, BeadSource

MAX_DAEMON_RESPONSE = 10 * 1024 * 1024  # the daemon's own limit
MAX_ERRORS = 20
MAX_UNKNOWN_NAMES = 5
STABLE_READ_ATTEMPTS = 20
SETTLE_SECONDS = 0.05  # how long a file that ends mid-line must stay unchanged to be taken as whole


KNOWN_FIELDS = {
    *Bead.model_fields,
    # Fields of the beads format we do not use but know (field notes, section 8).
    "assignee", "owner", "dependencies", "comments", "created_at", "updated_at", "close_reason",
    "created_by", "notes", "design", "external_ref", "metadata",
}  # fmt: skip


class BeadSnapshot(BaseModel):
    beads: list[Bead] = Field(default_factory=list)
    malformed: int = 0  # records that could not be read at all
    unknown_fields: int = 0  # records carrying fields we do not know (read anyway)
    unknown_names: list[str] = Field(default_factory=list)  # the commonest of those fields
    errors: list[str] = Field(default_factory=list)  # the first few problems, for people


class BeadSourceError(Exception):
    """The source itself cannot be read (missing file, dead socket): the sync is an Error."""


def _admit(
    records: Iterable[tuple[str, Any]], statuses: Sequence[str], labels: Sequence[str]
) -> BeadSnapshot:
    """Validate records (where, raw) and apply the filters: status in `statuses`, all `labels` present."""
    snapshot = BeadSnapshot()
    unknown: Counter[str] = Counter()
    for where, raw in records:
        try:
            bead = Bead.model_validate(raw)
        except ValidationError as error:
            snapshot.malformed += 1
            if len(snapshot.errors) < MAX_ERRORS:
                first = error.errors()[0]
                field = ".".join(str(part) for part in first["loc"]) or "record"
                snapshot.errors.append(f"{where}: {field}: {first['msg']}")
            continue
        if isinstance(raw, dict) and set(raw) - KNOWN_FIELDS:
            snapshot.unknown_fields += 1
            unknown.update(set(raw) - KNOWN_FIELDS)
        if statuses and bead.status not in statuses:
            continue
        if labels and not set(labels) <= set(bead.labels):
            continue
        snapshot.beads.append(bead)
    snapshot.unknown_names = [name for name, _ in unknown.most_common(MAX_UNKNOWN_NAMES)]
    return snapshot


def _stable_bytes(path: Path) -> bytes:
    """The whole file, read at one moment: re-read if it changed while we read it.

    A file that is empty or does not end a line may be one a writer is still
    writing: it is taken only once it has stayed the same for a moment.
    """
    for _ in range(STABLE_READ_ATTEMPTS):
        try:
            before = os.stat(path)
            data = path.read_bytes()
            after = os.stat(path)
            if not _same(before, after) or len(data) != after.st_size:
                continue
            if data.endswith(b"\n"):
                return data
            time.sleep(SETTLE_SECONDS)
            if _same(after, os.stat(path)):
                return data
        except FileNotFoundError:
            raise BeadSourceError(f"{path}: no such file") from None
    raise BeadSourceError(f"{path}: kept changing while being read ({STABLE_READ_ATTEMPTS} attempts)")


def _same(one: os.stat_result, other: os.stat_result) -> bool:
    return (one.st_ino, one.st_size, one.st_mtime_ns) == (other.st_ino, other.st_size, other.st_mtime_ns)


def read_jsonl(path: Path, statuses: Sequence[str] = (), labels: Sequence[str] = ()) -> BeadSnapshot:
    """A beads `issues.jsonl` export."""
    records: list[tuple[str, Any]] = []
    bad: list[str] = []
    for number, line in enumerate(_stable_bytes(path).decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            bad.append(f"line {number}: not JSON ({error.msg})")
    snapshot = _admit(records, statuses, labels)
    snapshot.malformed += len(bad)
    snapshot.errors = (bad + snapshot.errors)[:MAX_ERRORS]
    return snapshot


def read_sqlite(path: Path, statuses: Sequence[str] = (), labels: Sequence[str] = ()) -> BeadSnapshot:
    """The legacy `.beads/beads.db`, read-only, in one transaction (a consistent snapshot)."""
    if not path.exists():
        raise BeadSourceError(f"{path}: no such file")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise BeadSourceError(f"{path}: cannot open: {error}") from None
    try:
        connection.row_factory = sqlite3.Row
        connection.execute("BEGIN")
        issues = [dict(row) for row in connection.execute("SELECT * FROM issues")]
        tags: dict[str, list[str]] = {}
        for row in connection.execute("SELECT issue_id, label FROM labels"):
            tags.setdefault(row["issue_id"], []).append(row["label"])
    except sqlite3.Error as error:
        raise BeadSourceError(f"{path}: not a beads database: {error}") from None
    finally:
        connection.close()
    records = []
    for issue in issues:
        issue = {key: value for key, value in issue.items() if value is not None}
        issue["labels"] = tags.get(issue["id"], [])
        records.append((f"issue {issue.get('id', '?')}", issue))
    return _admit(records, statuses, labels)


def read_daemon(
    path: Path, statuses: Sequence[str] = (), labels: Sequence[str] = (), timeout: float = 10.0
) -> BeadSnapshot:
    """A running beads daemon on its Unix socket: one `list` request, one response line."""
    request: dict[str, Any] = {
        "operation": "list",
        "args": {},
        "actor": "gastown",
        "request_id": "gastown-sync",
    }
    if labels:
        request["args"]["labels"] = list(labels)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall(json.dumps(request).encode() + b"\n")
            response = b""
            while not response.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                response += chunk
                if len(response) > MAX_DAEMON_RESPONSE:
                    raise BeadSourceError(f"{path}: response larger than {MAX_DAEMON_RESPONSE} bytes")
    except (FileNotFoundError, ConnectionRefusedError) as error:
        raise BeadSourceError(f"{path}: no beads daemon answers ({error.strerror})") from None
    except TimeoutError:
        raise BeadSourceError(f"{path}: the beads daemon did not answer within {timeout:.0f}s") from None
    try:
        answer = json.loads(response)
    except json.JSONDecodeError:
        raise BeadSourceError(f"{path}: the daemon's answer is not JSON") from None
    if not answer.get("success"):
        raise BeadSourceError(f"{path}: the daemon refused: {answer.get('error') or 'no reason given'}")
    items = answer.get("data") or []
    return _admit(((f"item {i}", item) for i, item in enumerate(items)), statuses, labels)


# --- the BeadStore's side of things: where the source is, and the activities -----

READERS = {"jsonl": read_jsonl, "sqlite": read_sqlite, "daemon": read_daemon}


def source_path(path: str, checkout: str | None) -> Path:
    """`source.path` as a file: absolute, or relative to the rig's checkout (`.beads/issues.jsonl`)."""
    if os.path.isabs(path):
        return Path(path)
    if not checkout:
        raise BeadSourceError(
            f"source.path {path} is relative, but the rig has no spec.localPath to resolve it"
        )
    return Path(checkout) / path


def read_source(source: BeadSource, checkout: str | None, filters: BeadFilters | None = None) -> BeadSnapshot:
    statuses, labels = (filters.status, filters.labels) if filters else ([], [])
    return READERS[source.type](source_path(source.path, checkout), statuses, labels)


class BeadActivities(contract.BeadActivities):
    """Reading a rig's beads for its BeadStore and its polecats."""

    @activity.defn(name=contract.SYNC)
    @heartbeating
    async def sync(self, request: SyncRequest) -> SyncReport:
        try:
            snapshot = await asyncio.to_thread(read_source, request.source, request.checkout, request.filters)
        except BeadSourceError as error:
            return SyncReport(error=str(error))
        problems = list(snapshot.errors)
        if snapshot.malformed:
            problems.insert(0, f"{snapshot.malformed} malformed records skipped")
        if snapshot.unknown_fields:
            names = ", ".join(snapshot.unknown_names)
            problems.insert(
                0,
                f"{snapshot.unknown_fields} records carry fields this version does not read ({names}, ...); "
                "read anyway",
            )
        return SyncReport(issue_count=len(snapshot.beads), problems=problems[:MAX_ERRORS])

    @activity.defn(name=contract.FIND)
    @heartbeating
    async def find(self, lookup: BeadLookup) -> list[Bead]:
        try:
            snapshot = await asyncio.to_thread(read_source, lookup.source, lookup.checkout)
        except BeadSourceError as error:
            raise ApplicationError(str(error), type="BeadSourceUnavailable") from None
        wanted = set(lookup.bead_ids)
        return [bead for bead in snapshot.beads if bead.id in wanted]


async def find_beads(client: Client, rig: str, checkout: str | None, ids: Sequence[str]) -> list[Bead] | None:
    """Beads by id from the rig's BeadStore, unfiltered (a closed bead is found, and seen closed).

    None if the rig has no BeadStore; BeadSourceError if its source cannot be read.
    """
    found = await rig_bead_store(client, rig)
    store = found.spec if found else None
    if store is None:
        return None
    snapshot = await asyncio.to_thread(read_source, store.source, checkout)
    wanted = set(ids)
    return [bead for bead in snapshot.beads if bead.id in wanted]
