"""Rigs for real: their status from real git, their polecat count and their name pools."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.convoys import allocate_name
from bridge.reconcile import Reconciler, workflow_id_of
from crds import Polecat, Rig
from tests.helpers import GitRig, polecat, polecat_manifest, rig, rig_manifest, wait_until
from workflows.name_themes import RESERVED

pytestmark = pytest.mark.usefixtures("worker")


async def rig_status(reconciler: Reconciler, name: str, phase: str) -> Rig:
    async def probe() -> Rig | None:
        found = await reconciler.find(Rig, None, name)
        return (
            found if found and found.status and found.status.phase == phase and found.status.message else None
        )

    return await wait_until(probe, f"rig {name} {phase}")


async def test_rig_with_checkout_and_remote_is_ready(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """A checkout with its defaultBranch and a remote that answers: Ready, with a True Ready condition."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    found = await rig_status(reconciler, rig_name, "Ready")
    assert found.status is not None
    ready = next(condition for condition in found.status.conditions if condition.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "RigReady")


async def test_rig_whose_remote_does_not_answer_is_not_ready(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A gitURL that does not answer: NotReady, reason RemoteUnreachable, git's words in the message."""
    manifest = rig_manifest(rig_name, git_rig, gitURL=str(tmp_path / "no-such-remote.git"))
    await reconciler.apply(rig(manifest))
    found = await rig_status(reconciler, rig_name, "NotReady")
    assert found.status is not None
    assert found.status.conditions[0].reason == "RemoteUnreachable"
    assert "does not answer" in found.status.message


async def test_rig_without_checkout_is_ready_when_its_remote_answers(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """A cluster rig (gitURL, no localPath) is Ready when the remote has its defaultBranch."""
    await reconciler.apply(rig({"apiVersion": "gastown.gastown.io/v1alpha1", "kind": "Rig",
                                "metadata": {"name": rig_name}, "spec": {"gitURL": str(git_rig.remote)}}))  # fmt: skip
    found = await rig_status(reconciler, rig_name, "Ready")
    assert found.status is not None and str(git_rig.remote) in found.status.message


async def test_rig_without_checkout_or_remote_says_so(reconciler: Reconciler, rig_name: str) -> None:
    """Neither localPath nor gitURL: NotReady with reason NoWorkspace."""
    await reconciler.apply(rig({"apiVersion": "gastown.gastown.io/v1alpha1", "kind": "Rig",
                                "metadata": {"name": rig_name}, "spec": {}}))  # fmt: skip
    found = await rig_status(reconciler, rig_name, "NotReady")
    assert found.status is not None and found.status.conditions[0].reason == "NoWorkspace"


async def test_polecat_count_follows_live_polecats(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """polecatCount counts the rig's polecats that are not finished, and drops as they finish."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    gate = tmp_path / "gate"
    for name in ("nux", "slit"):
        await reconciler.apply(polecat(polecat_manifest(name, rig_name, "--wait-for", str(gate))))

    async def count(expected: int) -> Rig | None:
        found = await reconciler.find(Rig, None, rig_name)
        return found if found and found.status and found.status.polecat_count == expected else None

    await wait_until(lambda: count(2), "polecatCount 2")
    gate.touch()
    await wait_until(lambda: count(0), "polecatCount 0 once both succeeded")


async def test_concurrent_spawns_never_share_a_name(
    client: Client, reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """40 concurrent name requests (as a convoy's spawns ask: more than the server keeps in flight at once)
    get 40 different names, none reserved; asking again gives the same name."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig, namePools=["minerals", "mad-max"])))
    handle = client.get_workflow_handle(workflow_id_of(Rig, None, rig_name))
    holders = [f"test#{index}" for index in range(40)]
    names = await asyncio.gather(*(allocate_name(handle, holder, []) for holder in holders))
    assert len(set(names)) == 40
    assert not set(names) & RESERVED
    again = await allocate_name(handle, holders[7], [])
    assert again == names[7]


async def test_bead_without_the_rigs_prefix_is_refused(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """A polecat whose beadID lacks the rig's beadsPrefix is refused, naming the field and the prefix."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig, beadsPrefix="at")))
    problems = await reconciler.problems([polecat(polecat_manifest("nux", rig_name, beadID="gt-1"))])
    assert problems == [
        f"Polecat default/nux: spec.beadID: must carry rig {rig_name}'s beadsPrefix (at-...) (got 'gt-1')"
    ]
    assert await reconciler.find(Polecat, "default", "nux") is None
    assert await reconciler.problems([polecat(polecat_manifest("nux", rig_name, beadID="at-1"))]) == []
