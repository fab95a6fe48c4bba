"""Two hosts, each with its rig and a convoy on it: every local activity of a polecat runs on
its rig's host, and a host that goes away holds its polecats' work until it is back.

Each host is a real worker in a mount namespace of its own (tests/hosts.py): the same
path names different files on each, so work sent to the wrong host fails loudly. One
Temporal dev server serves both, as it would serve machines on a network.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bridge.reconcile import Reconciler
from client.settings import Settings
from contracts import attributes
from crds import Convoy, Polecat, Rig, Witness
from tests.helpers import (
    GitRig,
    convoy_manifest,
    make_git_rig,
    parsed,
    reach,
    rig,
    rig_manifest,
    terminate_running,
    wait_until,
    witness_manifest,
)
from tests.hosts import Host

BEADS = ["mh-1", "mh-2", "mh-3"]
# Activities on a local polecat's files: each must run on its rig's host.
LOCAL = ("git.", "tmux.", "beads.", "hosts.")


@pytest.fixture
async def hosts(settings: Settings, client: Client, tmp_path: Path) -> AsyncIterator[dict[str, Host]]:
    """Hosts alpha and beta, not started; both stopped, and the test's workflows ended, afterwards."""
    found = {
        name: Host(
            name=name,
            private=tmp_path / "hosts" / name,
            mountpoint=tmp_path / "here",
            temporal_address=settings.temporal_address,
            task_queue=settings.task_queue,
            log=tmp_path / f"{name}.log",
        )
        for name in ("alpha", "beta")
    }
    try:
        yield found
    finally:
        for host in found.values():
            host.stop()
        await terminate_running(client, settings.task_queue)


def host_rig(host: Host, name: str) -> tuple[GitRig, str]:
    """A rig checkout only `host` has (its remote is shared); the path the host sees it at."""
    made = make_git_rig(host.private / name)
    return made, str(host.mountpoint / name / "checkout")


def agent(host: Host) -> list[str]:
    """The scripted agent: counts its runs, waits for the test's word, commits."""
    host.seen_from_test(host.mountpoint / "runs").mkdir(exist_ok=True)
    return [
        "--runs", str(host.mountpoint / "runs" / "{bead}"),
        "--say", "working on {bead}",
        "--wait-for", str(host.mountpoint / "go"),
        "--commit", "{bead}.md=done",
    ]  # fmt: skip


async def activity_hosts(client: Client, workflow_id: str) -> dict[str, set[str]]:
    """Activity type -> the hosts whose workers ran it, from the workflow's history."""
    scheduled: dict[int, str] = {}
    ran: dict[str, set[str]] = defaultdict(set)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            ran[scheduled[started.scheduled_event_id]].add(started.identity.rsplit("@", 1)[-1])
    return ran


async def polecats_of(reconciler: Reconciler, namespace: str) -> list[Polecat]:
    return await reconciler.list(Polecat, namespace)


@pytest.mark.timeout(300)
async def test_local_work_stays_on_its_host_and_waits_for_it(
    hosts: dict[str, Host], reconciler: Reconciler, client: Client, rig_name: str
) -> None:
    """Each polecat's local activities ran on its rig's host only; host alpha's polecats wait
    while it is gone (saying so), none moves to beta, a Witness finds them Stuck, and once alpha
    is back each agent, run once, finishes its bead. A rig on a host with no worker says so."""
    alpha, beta = hosts["alpha"], hosts["beta"]
    remotes: dict[str, GitRig] = {}

    # beta's rig names no host: beta's worker, the only one running, finds the checkout first.
    beta.start()
    remotes["beta"], beta_path = host_rig(beta, "beta-rig")
    beta_rig = rig_manifest(f"{rig_name}-b", remotes["beta"], namePools=["b1", "b2", "b3"])
    beta_rig["spec"]["localPath"] = beta_path
    await reconciler.apply(rig(beta_rig))
    found = await reach_rig(reconciler, f"{rig_name}-b")
    assert found.status is not None and found.status.host == "beta"

    alpha.start()
    remotes["alpha"], alpha_path = host_rig(alpha, "alpha-rig")
    alpha_rig = rig_manifest(f"{rig_name}-a", remotes["alpha"], namePools=["a1", "a2", "a3"], host="alpha")
    alpha_rig["spec"]["localPath"] = alpha_path
    await reconciler.apply(rig(alpha_rig))
    found = await reach_rig(reconciler, f"{rig_name}-a")
    assert found.status is not None and found.status.host == "alpha"

    # A rig on a host that has no worker: its check waits for that host, and says so.
    nowhere = rig_manifest(f"{rig_name}-c", remotes["alpha"], host="gamma")
    nowhere["spec"]["localPath"] = alpha_path
    await reconciler.apply(rig(nowhere))

    witness = witness_manifest(f"{rig_name}-a", checkInterval="2s", stuckThreshold="20s")
    await reconciler.apply(parsed(Witness, witness))
    for host, name in ((alpha, f"{rig_name}-a"), (beta, f"{rig_name}-b")):
        manifest = convoy_manifest("work", name, BEADS, *agent(host), parallelism=len(BEADS))
        manifest["metadata"]["namespace"] = host.name
        await reconciler.apply(parsed(Convoy, manifest))

    async def working(namespace: str) -> list[Polecat] | None:
        polecats = await polecats_of(reconciler, namespace)
        phases = [p.status.phase if p.status else None for p in polecats]
        return polecats if len(polecats) == len(BEADS) and set(phases) == {"Working"} else None

    at_work = await wait_until(lambda: working("alpha"), "alpha's polecats to work", timeout=60)
    assert {p.status.host for p in at_work if p.status} == {"alpha"}
    await wait_until(lambda: working("beta"), "beta's polecats to work", timeout=60)

    alpha.kill()  # alpha's machine is gone; its agents, in their tmux sessions, live on

    async def waiting_for_alpha() -> bool:
        polecats = await polecats_of(reconciler, "alpha")
        return all(p.status and p.status.message.startswith("waiting for host alpha") for p in polecats)

    # A dead worker's watchers time out (10 s), then wait HOST_WAIT (30 s) in alpha's queue.
    await wait_until(waiting_for_alpha, "alpha's polecats to say they wait for host alpha", timeout=90)
    for polecat in await polecats_of(reconciler, "alpha"):
        assert polecat.status is not None and polecat.status.phase == "Working"
        assert any(c.type == "HostAvailable" and c.status == "False" for c in polecat.status.conditions)

    async def stuck() -> set[str] | None:
        found = await reconciler.find(Witness, "default", "witness")
        alerts = found.status.alerts if found and found.status else []
        names = {alert.polecat for alert in alerts if alert.type == "Stuck"}
        return names if len(names) == len(BEADS) else None

    # Their progress cannot be read while alpha is gone: quiet since alpha last answered.
    assert await wait_until(stuck, "the Witness to find alpha's polecats Stuck", timeout=60) == {
        f"alpha/{polecat.name}" for polecat in at_work
    }

    gamma = await reconciler.get(Rig, None, f"{rig_name}-c")
    assert gamma.status is not None and (gamma.status.phase, gamma.status.conditions[0].reason) == (
        "NotReady",
        "HostLost",
    )
    assert "host gamma has no worker" in gamma.status.message

    for host in (alpha, beta):
        host.seen_from_test(host.mountpoint / "go").write_text("")  # the agents may finish now
    await reach(reconciler, Convoy, "work", "Completed", timeout=60, namespace="beta")
    assert {p.status.phase for p in await polecats_of(reconciler, "alpha") if p.status} == {"Working"}

    alpha.start()  # back: its worker adopts the sessions and the work goes on
    await reach(reconciler, Convoy, "work", "Completed", timeout=90, namespace="alpha")

    for host in (alpha, beta):
        runs = {
            bead: host.seen_from_test(host.mountpoint / "runs" / bead).read_text().count("\n")
            for bead in BEADS
        }
        assert runs == dict.fromkeys(BEADS, 1), host.name  # each agent ran once: adopted, never again
        branches = remotes[host.name].remote_branches()
        for polecat in await polecats_of(reconciler, host.name):
            assert polecat.status is not None and polecat.status.phase == "Succeeded"
            assert polecat.status.branch in branches  # pushed from its host
            ran = await activity_hosts(client, attributes.workflow_id("Polecat", host.name, polecat.name))
            local = {kind: where for kind, where in ran.items() if kind.startswith(LOCAL)}
            assert {"git.prepare_worktree", "tmux.start_agent", "tmux.watch_agent"} <= set(local)
            assert set().union(*local.values()) == {host.name}, (polecat.name, local)


async def reach_rig(reconciler: Reconciler, name: str) -> Rig:
    async def ready() -> Rig | None:
        found = await reconciler.find(Rig, None, name)
        return found if found and found.status and found.status.phase == "Ready" else None

    return await wait_until(ready, f"rig {name} to be Ready", timeout=30)
