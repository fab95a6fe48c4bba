"""BeadStore readers on real beads data: the JSONL exports, a SQLite database and a daemon built from them."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from activities.beads import BeadSourceError, read_daemon, read_jsonl, read_sqlite
from tests.integration.conftest import BEADS, GASTOWN_EXPORT, records


def test_jsonl_reads_every_real_record() -> None:
    """Both real exports read whole, with the statuses their README states, and nothing malformed."""
    snapshot = read_jsonl(GASTOWN_EXPORT)
    assert len(snapshot.beads) == 2669 and snapshot.malformed == 0
    assert Counter(b.status for b in snapshot.beads) == {
        "closed": 2434, "open": 207, "hooked": 25, "deferred": 1, "tombstone": 1, "in_progress": 1,
    }  # fmt: skip
    assert snapshot.unknown_fields > 0  # event/agent extras are counted, not fatal
    other = read_jsonl(BEADS)
    assert len(other.beads) == 485
    assert Counter(b.status for b in other.beads) == {"closed": 360, "open": 121, "hooked": 4}


def test_filters_by_status_and_labels(tmp_path: Path) -> None:
    """Only the statuses asked for; only beads carrying every label asked for."""
    assert len(read_jsonl(GASTOWN_EXPORT, statuses=["open", "in_progress"]).beads) == 208
    lines = [
        {"id": "gt-1", "status": "open", "labels": ["backend", "urgent"]},
        {"id": "gt-2", "status": "open", "labels": ["backend"]},
        {"id": "gt-3", "status": "closed", "labels": ["backend", "urgent"]},
    ]
    path = tmp_path / "issues.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    assert [b.id for b in read_jsonl(path, statuses=["open"], labels=["backend", "urgent"]).beads] == ["gt-1"]


def test_bad_lines_are_counted_never_fatal(tmp_path: Path) -> None:
    """A truncated line and a record without an id are counted and described; the rest are read."""
    good = GASTOWN_EXPORT.read_text().splitlines()[:10]
    path = tmp_path / "issues.jsonl"
    path.write_text("\n".join([*good, '{"id": "gt-x", "title": ', '{"title": "no id"}']) + "\n")
    snapshot = read_jsonl(path)
    assert (len(snapshot.beads), snapshot.malformed) == (10, 2)
    assert snapshot.errors[0].startswith("line 11: not JSON")
    assert snapshot.errors[1] == "line 12: id: Field required"


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    """A missing file is an error of the source, with its path."""
    with pytest.raises(BeadSourceError, match="no such file"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_sqlite_reads_the_legacy_database(beads_db: Path) -> None:
    """The SQLite reader sees the same beads as the export it was built from, labels included."""
    snapshot = read_sqlite(beads_db)
    assert len(snapshot.beads) == 485 and snapshot.malformed == 0
    expected = {str(r["id"]): sorted(r.get("labels") or []) for r in records(BEADS)}  # type: ignore[call-overload]
    assert {b.id: sorted(b.labels) for b in snapshot.beads} == expected
    assert len(read_sqlite(beads_db, statuses=["open"]).beads) == 121


def test_sqlite_that_is_not_beads_is_a_source_error(tmp_path: Path) -> None:
    """A database without the beads tables is an error naming the problem."""
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(BeadSourceError, match="not a beads database"):
        read_sqlite(other)


def test_daemon_lists_over_its_socket(daemon: tuple[Path, list[dict[str, object]]]) -> None:
    """The daemon reader sends one `list` request and reads every bead from the answer."""
    path, seen = daemon
    snapshot = read_daemon(path)
    assert len(snapshot.beads) == 485
    assert seen[0]["operation"] == "list"


def test_dead_daemon_is_a_source_error(tmp_path: Path) -> None:
    """No daemon on the socket: an error that says so."""
    with pytest.raises(BeadSourceError, match="no beads daemon answers"):
        read_daemon(tmp_path / "bd.sock")


def test_a_file_rewritten_during_reads_is_never_half_read(tmp_path: Path) -> None:
    """While a writer rewrites the export in place (truncate, half a line, a pause, the rest), and also
    replaces it whole, every read sees one whole version: 3 beads or 5, never a part, never a bad line."""
    path = tmp_path / "issues.jsonl"
    versions = [
        "".join(json.dumps({"id": f"gt-{n}", "title": "x" * 200}) + "\n" for n in range(count)).encode()
        for count in (3, 5)
    ]
    path.write_bytes(versions[0])
    stop = threading.Event()

    def writer() -> None:
        turn = 0
        while not stop.is_set():
            text = versions[turn % 2]
            if turn % 3 == 2:  # whole replacement, as `bd export` does
                (tmp_path / "next").write_bytes(text)
                os.replace(tmp_path / "next", path)
            else:  # in place, caught mid-line for a moment
                with path.open("r+b") as stream:
                    stream.truncate(0)
                    stream.write(text[: len(text) // 2 + 7])
                    stream.flush()
                    time.sleep(0.02)
                    stream.write(text[len(text) // 2 + 7 :])
            turn += 1
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = set()
        for _ in range(60):
            snapshot = read_jsonl(path)
            assert snapshot.malformed == 0, snapshot.errors
            seen.add(len(snapshot.beads))
    finally:
        stop.set()
        thread.join()
    assert seen <= {3, 5} and seen
