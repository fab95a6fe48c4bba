"""BeadStores for real: a Temporal Schedule syncing real beads data, and polecats reading their bead."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from bridge.reconcile import Reconciler
from crds import BeadStore, InvalidResource, Polecat, Rig
from tests.helpers import (
    GitRig,
    beadstore_manifest,
    parsed,
    polecat,
    polecat_manifest,
    reach,
    rig,
    rig_manifest,
    wait_until,
    write_beads,
)
from tests.integration.conftest import GASTOWN_EXPORT, records

pytestmark = pytest.mark.usefixtures("worker")


def store(manifest: dict[str, Any]) -> BeadStore:
    return parsed(BeadStore, manifest)


async def store_phase(reconciler: Reconciler, name: str, phase: str) -> BeadStore:
    return await reach(reconciler, BeadStore, name, phase)


async def test_syncs_the_rigs_export_on_a_schedule(
    client: Client, reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """A relative source.path is read from the rig's checkout, filtered; the Schedule and the rig show it."""
    (git_rig.checkout / ".beads").mkdir()
    shutil.copy(GASTOWN_EXPORT, git_rig.checkout / ".beads" / "issues.jsonl")
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    manifest = beadstore_manifest("beads", rig_name, ".beads/issues.jsonl", syncInterval="7m")
    manifest["spec"]["filters"] = {"status": ["open"]}
    await reconciler.apply(store(manifest))

    synced = await store_phase(reconciler, "beads", "Synced")
    assert synced.status is not None
    expected = sum(record["status"] == "open" for record in records(GASTOWN_EXPORT))
    assert synced.status.issue_count == expected and synced.status.last_sync is not None
    schedule = await client.get_schedule_handle("beadstore/default/beads").describe()
    assert schedule.schedule.spec.intervals[0].every == timedelta(minutes=7)

    async def rig_synced() -> Rig | None:
        found = await reconciler.find(Rig, None, rig_name)
        return found if found and found.status and found.status.last_sync else None

    await wait_until(rig_synced, "the rig's lastSync")


async def test_missing_source_is_an_error_and_recovers(
    client: Client, reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A missing file is phase Error with its path; once the file exists, the next sync is Synced."""
    source = tmp_path / "later" / "issues.jsonl"
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(store(beadstore_manifest("beads", rig_name, str(source))))
    failed = await store_phase(reconciler, "beads", "Error")
    assert failed.status is not None
    assert failed.status.errors[0].message == f"{source}: no such file"

    write_beads(source, [{"id": "gt-1"}, {"id": "gt-2"}])
    await client.get_schedule_handle("beadstore/default/beads").trigger()  # as "Trigger" in the UI
    recovered = await store_phase(reconciler, "beads", "Synced")
    assert recovered.status is not None
    assert (recovered.status.issue_count, recovered.status.errors) == (2, [])


async def test_bad_records_are_counted_never_fatal(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Malformed lines and unknown fields are reported in errors (with timestamps); the good beads count."""
    source = tmp_path / "issues.jsonl"
    write_beads(source, [{"id": "gt-1"}, {"id": "gt-2", "brand_new_field": 1}])
    with source.open("a") as export:
        export.write("{not json\n")
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(store(beadstore_manifest("beads", rig_name, str(source))))
    synced = await store_phase(reconciler, "beads", "Synced")
    assert synced.status is not None and synced.status.issue_count == 2
    messages = [error.message for error in synced.status.errors]
    assert messages[:2] == [
        "1 records carry fields this version does not read (brand_new_field, ...); read anyway",
        "1 malformed records skipped",
    ]
    assert messages[2].startswith("line 3: not JSON")
    assert all(error.timestamp is not None for error in synced.status.errors)


@pytest.mark.parametrize("kind", ["sqlite", "daemon"])
async def test_sqlite_and_daemon_sources_sync(
    request: pytest.FixtureRequest, kind: str, reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """The legacy database and a running daemon sync through the same BeadStore (485 real beads)."""
    path = request.getfixturevalue("beads_db") if kind == "sqlite" else request.getfixturevalue("daemon")[0]
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(store(beadstore_manifest("beads", rig_name, str(path), kind=kind)))
    synced = await store_phase(reconciler, "beads", "Synced")
    assert synced.status is not None and synced.status.issue_count == 485


async def test_a_rig_has_one_beadstore(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A second BeadStore for the same rig is refused, naming the first; once the first is deleted, it is not."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(store(beadstore_manifest("first", rig_name, str(tmp_path / "a.jsonl"))))
    second = store(beadstore_manifest("second", rig_name, str(tmp_path / "b.jsonl")))
    assert await reconciler.problems([second]) == [
        f"BeadStore default/second: spec.rigRef: Rig {rig_name!r} already has a BeadStore (default/first); "
        "a rig has one"
    ]
    await reconciler.delete(BeadStore, "default", "first")
    assert await reconciler.problems([second]) == []
    assert await reconciler.apply(second) == "created"


async def test_two_beadstores_applied_at_once_for_one_rig_one_wins(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Two BeadStores applied concurrently for one rig (past the up-front check): exactly one is refused."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    stores = [
        store(beadstore_manifest(name, rig_name, str(tmp_path / f"{name}.jsonl"))) for name in ("a", "b")
    ]
    outcomes = await asyncio.gather(*(reconciler.apply(each) for each in stores), return_exceptions=True)
    refused = [outcome for outcome in outcomes if isinstance(outcome, InvalidResource)]
    assert len(refused) == 1 and "already has a BeadStore" in str(refused[0])
    found = [await reconciler.find(BeadStore, "default", name) for name in ("a", "b")]
    assert sum(each is not None for each in found) == 1


async def test_interval_change_retimes_and_delete_removes_the_schedule(
    client: Client, reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Changing syncInterval changes the Schedule (a pause set in the UI stays); deleting the BeadStore deletes it."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    manifest = beadstore_manifest("beads", rig_name, str(tmp_path / "a.jsonl"))
    await reconciler.apply(store(manifest))
    handle = client.get_schedule_handle("beadstore/default/beads")

    async def every(expected: timedelta) -> bool:
        try:
            return (await handle.describe()).schedule.spec.intervals[0].every == expected
        except RPCError:
            return False

    await wait_until(lambda: every(timedelta(minutes=5)), "the default 5m schedule")
    await handle.pause(note="paused by a person in the UI")
    manifest["spec"]["syncInterval"] = "90s"
    assert await reconciler.apply(store(manifest)) == "configured"
    await wait_until(lambda: every(timedelta(seconds=90)), "the schedule retimed to 90s")
    assert (await handle.describe()).schedule.state.paused
    await reconciler.delete(BeadStore, "default", "beads")
    with pytest.raises(RPCError):
        await handle.describe()


async def test_polecat_prompt_carries_the_bead_text(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """The agent reads its bead's id, title, description and acceptance criteria from the BeadStore."""
    source = tmp_path / "issues.jsonl"
    write_beads(
        source,
        [{"id": "gt-test1", "title": "Oil the war rig", "description": "It squeaks; $(rm -rf /) stays text.",
          "acceptance_criteria": "No squeak at 100 km/h."}],
    )  # fmt: skip
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(store(beadstore_manifest("beads", rig_name, str(source))))
    await store_phase(reconciler, "beads", "Synced")
    await reconciler.apply(polecat(polecat_manifest("nux", rig_name)))
    finished = await reach(reconciler, Polecat, "nux", "Succeeded")
    assert finished.status is not None and finished.status.log_file
    log = Path(finished.status.log_file).read_text()
    for text in ("gt-test1", "Oil the war rig", "$(rm -rf /) stays text.", "No squeak at 100 km/h."):
        assert text in log


async def test_closed_bead_is_never_worked(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A polecat for a closed bead fails with BeadClosed and no agent session."""
    source = tmp_path / "issues.jsonl"
    write_beads(source, [{"id": "gt-test1", "status": "closed"}])
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(store(beadstore_manifest("beads", rig_name, str(source))))
    await store_phase(reconciler, "beads", "Synced")
    await reconciler.apply(polecat(polecat_manifest("nux", rig_name)))
    status = (await reach(reconciler, Polecat, "nux", "Failed")).status
    assert status is not None and status.tmux_session is None
    assert status.message == "bead gt-test1 is already closed; nothing to do"
