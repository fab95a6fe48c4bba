"""Polecats in kubernetes mode: pods on the (fake) API server, moved by the test as a kubelet would.

The API server is the one stand-in (tests/fake_apiserver.py). No kubelet runs,
so each test sets pod phases and container states itself, exactly as a
kubelet reports them. Temporal and the worker are real.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from bridge.reconcile import Reconciler, workflow_id_of
from client.settings import Settings
from client.usage import live_usage
from client.visibility import SdkReads, provider_gates
from contracts.providers import key_id
from crds import Polecat, Rig, parse_resource
from crds.usage import ModelUsage, Usage
from launch.gateway import LimitRecord
from launch.pod_entrypoint import NO_COMMITS, OVER_BUDGET, RATE_LIMITED
from launch.pod_gateway import USAGE_MARK, PodGateway, PodReport
from tests.fake_apiserver import FakeApiServer
from tests.helpers import GASTOWN, parsed, reach, terminate_running, wait_until, worker_env
from worker.main import build_worker

SECRET_VALUE = "sk-ant-api03-THIS-MUST-NEVER-LEAK-8d3f"
SPENT = Usage.of([ModelUsage(model="claude-sonnet-4-5", input_tokens=150, output_tokens=50, requests=2)])


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def kube_settings(settings: Settings, api: FakeApiServer, tmp_path: Path) -> Settings:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(api.kubeconfig()))
    return settings.model_copy(
        update={"kubeconfig": str(kubeconfig), "polecat_image": "gastown/polecat:test"}
    )


def bare_rig(settings: Settings) -> Rig:
    """A rig of this test's own; kubernetes-mode polecats need no checkout."""
    rig = parse_resource(
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Rig",
            "metadata": {"name": f"r-{settings.task_queue}"},
            "spec": {},
        }
    )
    assert isinstance(rig, Rig)
    return rig


def pods_of(api: FakeApiServer, polecat: str) -> list[dict[str, Any]]:
    return [
        p
        for p in api.objects("pods", "default")
        if p["metadata"]["labels"]["gastown.gastown.io/polecat"] == polecat
    ]


@pytest.fixture
async def reconciler(client: Client, kube_settings: Settings) -> AsyncIterator[Reconciler]:
    """A worker that reaches the fake API server, and the reconcile core that starts polecats."""
    reconciler = Reconciler(client, kube_settings.task_queue)
    rig = bare_rig(kube_settings)
    async with build_worker(client, kube_settings):
        await reconciler.apply(rig)
        yield reconciler
        await terminate_running(client, kube_settings.task_queue)


def decoded(node: Any) -> str:
    """Everything in a history as text: its JSON, and every payload's data decoded."""
    parts = [json.dumps(node)]
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, str) and "metadata" in node:  # a payload: base64 data
            parts.append(base64.b64decode(data).decode(errors="replace"))
        parts += [decoded(value) for value in node.values()]
    elif isinstance(node, list):
        parts += [decoded(value) for value in node]
    return "\n".join(parts)


def pod_polecat(name: str, reconciler: Reconciler, deadline: int = 3600, **spec: Any) -> Polecat:
    return parsed(
        Polecat,
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Polecat",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "rig": f"r-{reconciler.task_queue}",
                "desiredState": "Working",
                "beadID": "at-1",
                "executionMode": "kubernetes",
                "kubernetes": {
                    "gitRepository": "git@example.com:org/athena.git",
                    "activeDeadlineSeconds": deadline,
                    "apiKeySecretRef": {"name": "anthropic"},
                    "gitSecretRef": {"name": "deploy-key"},
                },
                **spec,
            },
        },
    )


async def phase_of(reconciler: Reconciler, name: str, *phases: str) -> Polecat:
    return await reach(reconciler, Polecat, name, *phases, timeout=60)


def the_pod(api: FakeApiServer, name: str) -> dict[str, Any]:
    (pod,) = pods_of(api, name)
    return pod


def container(state: dict[str, Any]) -> dict[str, Any]:
    """A container status as the kubelet reports it (every field it always sets)."""
    return {
        "name": "agent",
        "image": "gastown/polecat:test",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": state,
    }


def terminated(exit_code: int, reason: str, message: str) -> dict[str, Any]:
    return container({"terminated": {"exitCode": exit_code, "reason": reason, "message": message}})


def pod_ends(api: FakeApiServer, pod: str, exit_code: int, report: PodReport) -> None:
    """The agent container ends with `exit_code` and the entrypoint's report, as the kubelet says."""
    phase, reason = ("Succeeded", "Completed") if exit_code == 0 else ("Failed", "Error")
    api.patch_status(
        "pods",
        "default",
        pod,
        {"phase": phase, "containerStatuses": [terminated(exit_code, reason, report.message())]},
    )


async def test_pod_runs_to_succeeded_with_its_commit(reconciler: Reconciler, api: FakeApiServer) -> None:
    """The pod is created from the spec; when its agent succeeds, the polecat is Succeeded with the
    pushed commit and what its pod's gateway counted."""
    await reconciler.apply(pod_polecat("furiosa", reconciler))
    working = await phase_of(reconciler, "furiosa", "Working")
    pod = the_pod(api, "furiosa")
    assert working.status is not None and working.status.pod_name == pod["metadata"]["name"]
    assert pod["spec"]["containers"][0]["image"] == "gastown/polecat:test"
    api.patch_status("pods", "default", pod["metadata"]["name"], {"phase": "Running"})  # as the kubelet
    commit = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    pod_ends(api, pod["metadata"]["name"], 0, PodReport(branch="polecat/furiosa", commit=commit, usage=SPENT))
    done = await phase_of(reconciler, "furiosa", "Succeeded", "Failed")
    assert done.status is not None
    assert (done.status.phase, done.status.commit) == ("Succeeded", commit)
    assert done.status.usage == SPENT


async def test_oom_killed_agent_fails_with_the_reason(reconciler: Reconciler, api: FakeApiServer) -> None:
    """An agent container OOMKilled leaves the polecat Failed saying so, with the log tail."""
    await reconciler.apply(pod_polecat("nux", reconciler))
    await phase_of(reconciler, "nux", "Working")
    name = the_pod(api, "nux")["metadata"]["name"]
    api.patch_status(
        "pods",
        "default",
        name,
        {"phase": "Failed", "containerStatuses": [terminated(137, "OOMKilled", "allocating 9Gi...")]},
    )
    failed = await phase_of(reconciler, "nux", "Failed")
    assert failed.status is not None
    assert (
        "agent exited with code 137 (OOMKilled)" in failed.status.message
        and "allocating 9Gi" in failed.status.message
    )
    assert next(c for c in failed.status.conditions if c.type == "Failed").reason == "OOMKilled"


async def test_a_pod_agent_that_left_no_commit_fails_with_no_commits(
    reconciler: Reconciler, api: FakeApiServer
) -> None:
    """The entrypoint's NO_COMMITS exit (a named agent exited 0 without a commit) leaves the polecat
    Failed with reason NoCommits and the agent's last words."""
    await reconciler.apply(pod_polecat("nux", reconciler))
    await phase_of(reconciler, "nux", "Working")
    name = the_pod(api, "nux")["metadata"]["name"]
    words = "I will not.\ngastown: the agent exited 0 but left no commit on polecat/nux"
    api.patch_status(
        "pods",
        "default",
        name,
        {"phase": "Failed", "containerStatuses": [terminated(NO_COMMITS, "Error", words)]},
    )
    failed = await phase_of(reconciler, "nux", "Failed")
    assert failed.status is not None and "I will not." in failed.status.message
    assert next(c for c in failed.status.conditions if c.type == "Failed").reason == "NoCommits"


async def test_image_that_cannot_be_pulled_fails_the_polecat(
    reconciler: Reconciler, api: FakeApiServer
) -> None:
    """A pod stuck in ImagePullBackOff fails the polecat with the kubelet's reason."""
    slit = pod_polecat("slit", reconciler)
    assert slit.spec.kubernetes is not None
    slit.spec.kubernetes.image = "registry.example/nope:1"
    await reconciler.apply(slit)
    await phase_of(reconciler, "slit", "Working")
    name = the_pod(api, "slit")["metadata"]["name"]
    waiting = container(
        {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": 'Back-off pulling image "registry.example/nope:1"',
            }
        }
    )
    api.patch_status("pods", "default", name, {"phase": "Pending", "containerStatuses": [waiting]})
    failed = await phase_of(reconciler, "slit", "Failed")
    assert failed.status is not None and "ImagePullBackOff" in failed.status.message


async def test_terminate_deletes_the_pod(reconciler: Reconciler, api: FakeApiServer) -> None:
    """Terminating a kubernetes-mode polecat deletes its pod."""
    await reconciler.apply(pod_polecat("toast", reconciler))
    await phase_of(reconciler, "toast", "Working")
    await reconciler.signal(Polecat, "default", "toast", "terminate")
    await phase_of(reconciler, "toast", "Terminated")
    assert not pods_of(api, "toast")


async def test_deadline_is_a_durable_timer_across_worker_restarts(
    client: Client, kube_settings: Settings, api: FakeApiServer
) -> None:
    """With the worker restarted meanwhile, activeDeadlineSeconds still fails the polecat and deletes its pod."""
    reconciler = Reconciler(client, kube_settings.task_queue)
    rig = bare_rig(kube_settings)
    try:
        async with build_worker(client, kube_settings):
            await reconciler.apply(rig)
            await reconciler.apply(pod_polecat("dag", reconciler, deadline=4))
            await phase_of(reconciler, "dag", "Working")
        async with build_worker(client, kube_settings):  # a new worker; the pod never finishes
            failed = await phase_of(reconciler, "dag", "Failed")
    finally:
        # Its workflows would outlive the test: a later test's `dag` would join this one's.
        await terminate_running(client, kube_settings.task_queue)
    assert failed.status is not None
    assert next(c for c in failed.status.conditions if c.type == "Failed").reason == "DeadlineExceeded"
    assert not pods_of(api, "dag")


async def test_secret_values_never_reach_the_history(
    reconciler: Reconciler, api: FakeApiServer, client: Client
) -> None:
    """A polecat using an API-key secret: the secret's value is nowhere in its workflow history."""
    api.create(
        "secrets", "default", {"metadata": {"name": "anthropic"}, "stringData": {"api-key": SECRET_VALUE}}
    )
    await reconciler.apply(pod_polecat("keeper", reconciler))
    await phase_of(reconciler, "keeper", "Working")
    name = the_pod(api, "keeper")["metadata"]["name"]
    api.patch_status(
        "pods",
        "default",
        name,
        {"phase": "Failed", "containerStatuses": [terminated(1, "Error", "auth failed")]},
    )
    await phase_of(reconciler, "keeper", "Failed")
    history = await client.get_workflow_handle(workflow_id_of(Polecat, "default", "keeper")).fetch_history()
    text = decoded(json.loads(history.to_json()))
    assert '"apiKeySecretRef":{"name":"anthropic","key":"api-key"}' in text  # the reference is there...
    assert SECRET_VALUE not in text  # ...the value never
    assert SECRET_VALUE not in json.dumps(the_pod(api, "keeper"))


async def test_a_retried_start_adopts_the_pod(
    reconciler: Reconciler, api: FakeApiServer, kube_settings: Settings
) -> None:
    """Starting a polecat's pod again (as a retry or a restarted worker does) adopts it: still one pod."""
    from activities.kube import KubeConnection
    from activities.pods import PodActivities
    from contracts.pods import PodLaunch

    resource = pod_polecat("cheedo", reconciler)
    await reconciler.apply(resource)
    await phase_of(reconciler, "cheedo", "Working")
    started = await reconciler.get(Polecat, "default", "cheedo")
    pods = PodActivities(KubeConnection(kube_settings.kubeconfig), kube_settings.polecat_image)
    again = await pods.start_pod(PodLaunch(polecat=started))
    assert started.status is not None and again.name == started.status.pod_name
    assert len([p for p in api.objects("pods", "default") if p["metadata"]["name"] == again.name]) == 1


def gateway_of(pod: dict[str, Any]) -> PodGateway:
    """The settings a pod's gateway was started with."""
    env = {item["name"]: item.get("value") for item in pod["spec"]["containers"][0]["env"]}
    return PodGateway.model_validate_json(env["GT_GATEWAY"])


def pod_named(api: FakeApiServer, polecat: str, suffix: str) -> dict[str, Any]:
    return next(pod for pod in pods_of(api, polecat) if pod["metadata"]["name"].endswith(suffix))


async def test_a_pod_stopped_for_its_budget_fails_the_polecat_and_a_raised_budget_goes_on_in_a_new_pod(
    reconciler: Reconciler, api: FakeApiServer
) -> None:
    """The entrypoint's OVER_BUDGET exit: the polecat is Failed (BudgetExceeded) with the spend.
    A raised budget restarts it as a new pod that goes on from the pushed branch, its gateway
    holding it to the new budget over both attempts' spend."""
    await reconciler.apply(pod_polecat("furiosa", reconciler, budget={"maxTokens": 100}))
    await phase_of(reconciler, "furiosa", "Working")
    first = the_pod(api, "furiosa")["metadata"]["name"]
    why = "used 200 tokens of spec.budget.maxTokens 100"
    report = PodReport(branch="polecat/furiosa", commit="4b825dc6", usage=SPENT, over_budget=why)
    pod_ends(api, first, OVER_BUDGET, report)
    failed = await phase_of(reconciler, "furiosa", "Failed")
    assert failed.status is not None and failed.status.usage == SPENT
    assert next(c for c in failed.status.conditions if c.type == "Failed").reason == "BudgetExceeded"
    assert why in failed.status.message

    await reconciler.apply(pod_polecat("furiosa", reconciler, budget={"maxTokens": 1000}))
    await phase_of(reconciler, "furiosa", "Working")
    again = pod_named(api, "furiosa", "-r1")
    settings = gateway_of(again)
    assert settings.budget is not None and settings.budget.max_tokens == 1000
    assert settings.spent == SPENT.models
    prompt = next(
        item["value"] for item in again["spec"]["containers"][0]["env"] if item["name"] == "GT_PROMPT"
    )
    assert "continue from where it stopped" in prompt


async def test_a_pod_stopped_for_a_long_limit_parks_the_polecat_then_resumes_it_in_a_new_pod(
    reconciler: Reconciler, api: FakeApiServer
) -> None:
    """The entrypoint's RATE_LIMITED exit: the polecat is Pending with condition RateLimited until
    the reset, then Working again in a new pod (a resume, not a restart), its spend carried over."""
    await reconciler.apply(pod_polecat("nux", reconciler))
    await phase_of(reconciler, "nux", "Working")
    first = the_pod(api, "nux")["metadata"]["name"]
    limit = LimitRecord(provider="anthropic", until=time.time() + 3, status=429)
    report = PodReport(branch="polecat/nux", usage=SPENT, limit=limit)
    pod_ends(api, first, RATE_LIMITED, report)
    parked = await phase_of(reconciler, "nux", "Pending")
    assert parked.status is not None
    limited = next(c for c in parked.status.conditions if c.type == "RateLimited")
    assert (limited.status, limited.reason) == ("True", "RateLimited")
    assert "rate limited by anthropic (HTTP 429)" in limited.message

    async def working_again() -> Polecat | None:
        found = await reconciler.find(Polecat, "default", "nux")
        status = found.status if found else None
        return found if status and status.phase == "Working" and status.resumes else None

    resumed = await wait_until(working_again, "nux to resume after the reset", 60)
    assert resumed.status is not None and (resumed.status.resumes, resumed.status.restarts) == (1, 0)
    assert resumed.status.usage == SPENT
    assert gateway_of(pod_named(api, "nux", "-r1")).spent == SPENT.models
    reset = next(c for c in resumed.status.conditions if c.type == "RateLimited")
    assert (reset.status, reset.reason) == ("False", "RateLimitReset")


@pytest.fixture
async def gated(client: Client, kube_settings: Settings) -> AsyncIterator[Reconciler]:
    """As `reconciler`, with anthropic gated at one agent at once per key."""
    gated_settings = kube_settings.model_copy(update={"provider_limits": {"anthropic": 1}})
    reconciler = Reconciler(client, gated_settings.task_queue)
    async with build_worker(client, gated_settings):
        await reconciler.apply(bare_rig(gated_settings))
        yield reconciler
        await terminate_running(client, gated_settings.task_queue)


async def test_each_key_has_a_gate_of_its_own(gated: Reconciler, api: FakeApiServer, client: Client) -> None:
    """A provider's cap holds per key: with anthropic at one agent at once, a pod using team A's
    secret and one using team B's both run; a second of team A's waits Pending for A's slot, and
    starts once the first pod ends. `gastown get providers` lists the two gates."""
    team_a, team_b = f"team-a-{gated.task_queue}", f"team-b-{gated.task_queue}"

    def keyed(name: str, secret: str) -> Polecat:
        resource = pod_polecat(name, gated)
        assert resource.spec.kubernetes is not None and resource.spec.kubernetes.api_key_secret_ref
        resource.spec.kubernetes.api_key_secret_ref.name = secret
        return resource

    await gated.apply(keyed("ace", team_a))
    await phase_of(gated, "ace", "Working")
    await gated.apply(keyed("bee", team_b))
    await phase_of(gated, "bee", "Working")
    await gated.apply(keyed("cue", team_a))
    gate_a = f"anthropic@{key_id(f'default/{team_a}/api-key')}"

    async def waiting() -> Polecat | None:
        found = await gated.find(Polecat, "default", "cue")
        message = found.status.message if found and found.status else ""
        return found if f"waiting for a slot of provider {gate_a}" in message else None

    await wait_until(waiting, "cue to wait for team A's slot", 60)
    assert not pods_of(api, "cue")
    gates = {gate.gate: gate for gate in await provider_gates(client)}
    assert gate_a in gates and f"anthropic@{key_id(f'default/{team_b}/api-key')}" in gates
    assert len(gates[gate_a].running) == 1 and len(gates[gate_a].waiting) == 1

    pod_ends(
        api, the_pod(api, "ace")["metadata"]["name"], 0, PodReport(branch="polecat/ace", commit="4b825dc6")
    )
    await phase_of(gated, "cue", "Working")


async def test_a_working_pods_spend_is_live_from_its_log(
    reconciler: Reconciler, api: FakeApiServer, client: Client
) -> None:
    """While the pod works, its watcher reads the running total its entrypoint writes into the
    pod's log, and the live figure (what `gastown get -o wide` shows) follows it."""
    await reconciler.apply(pod_polecat("slit", reconciler))
    await phase_of(reconciler, "slit", "Working")
    name = the_pod(api, "slit")["metadata"]["name"]
    line = f"{USAGE_MARK}{SPENT.model_dump_json(by_alias=True, exclude_none=True)}"
    api.pod_logs[("default", name)] = [(datetime.now(UTC), "thinking..."), (datetime.now(UTC), line)]

    async def live() -> Usage | None:
        usage = await live_usage(SdkReads(client), workflow_id_of(Polecat, "default", "slit"))
        return usage if usage == SPENT else None

    await wait_until(live, "the pod's spend to show live", 60)


async def test_a_terminated_pods_spend_is_kept(reconciler: Reconciler, api: FakeApiServer) -> None:
    """Terminating a working pod deletes it, and what its log last said it had spent is its
    polecat's final usage (the pod's ledger goes with the pod)."""
    await reconciler.apply(pod_polecat("toast", reconciler))
    await phase_of(reconciler, "toast", "Working")
    name = the_pod(api, "toast")["metadata"]["name"]
    line = f"{USAGE_MARK}{SPENT.model_dump_json(by_alias=True, exclude_none=True)}"
    api.pod_logs[("default", name)] = [(datetime.now(UTC), line)]
    await reconciler.signal(Polecat, "default", "toast", "terminate")
    terminated = await phase_of(reconciler, "toast", "Terminated")
    assert terminated.status is not None and terminated.status.usage == SPENT
    assert not pods_of(api, "toast")


async def test_logs_and_attach_read_a_pods_log(
    reconciler: Reconciler, api: FakeApiServer, kube_settings: Settings
) -> None:
    """`gastown logs` prints a pod's agent log through the API server; `gastown attach` follows it,
    and refuses --write (a pod's agent takes no input)."""
    await reconciler.apply(pod_polecat("slit", reconciler))
    await phase_of(reconciler, "slit", "Working")
    name = the_pod(api, "slit")["metadata"]["name"]
    api.pod_logs[("default", name)] = [(datetime.now(UTC), "cloning"), (datetime.now(UTC), "<b>thinking</b>")]
    env = {
        **worker_env(
            kube_settings.temporal_address,
            kube_settings.task_queue,
            kube_settings.home,
            kube_settings.tmux_socket,
        ),
        "KUBECONFIG": str(kube_settings.kubeconfig),
    }

    async def run(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            GASTOWN, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        return process.returncode or 0, out.decode(), err.decode()

    logged = await run("logs", "polecat", "slit")
    assert logged == (0, "cloning\n<b>thinking</b>\n", ""), logged[2]
    code, out, _ = await run("attach", "polecat", "slit")
    assert (code, out) == (0, "cloning\n<b>thinking</b>\n")  # the fake's log ends; a real one is followed
    code, _, err = await run("attach", "polecat", "slit", "--write")
    assert code == 1 and "a pod's agent takes no input" in err


async def test_a_nudge_to_a_succeeded_pod_is_a_new_pod_with_the_follow_up(
    reconciler: Reconciler, api: FakeApiServer
) -> None:
    """Succeeded -> Working for a pod: a new pod (`-r1`) that clones the pushed branch, the
    follow-up in its agent's prompt, the earlier spend carried."""
    await reconciler.apply(pod_polecat("dag", reconciler))
    await phase_of(reconciler, "dag", "Working")
    pod_ends(
        api,
        the_pod(api, "dag")["metadata"]["name"],
        0,
        PodReport(branch="polecat/dag", commit="4b825dc6", usage=SPENT),
    )
    await phase_of(reconciler, "dag", "Succeeded")

    what = await reconciler.update(Polecat, "default", "dag", "follow_up", "now the docs, please")

    assert what == "the agent's session is resumed with it"
    await phase_of(reconciler, "dag", "Working")
    again = pod_named(api, "dag", "-r1")
    prompt = next(
        item["value"] for item in again["spec"]["containers"][0]["env"] if item["name"] == "GT_PROMPT"
    )
    assert "now the docs, please" in prompt and "follow-up" in prompt
    assert gateway_of(again).spent == SPENT.models
