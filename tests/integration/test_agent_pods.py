"""Each agent's pod, as `build_pod` makes it, run for real: in the polecat image, under Docker.

The test kubelet (tests/kubelet.py) runs the pod's containers as a kubelet would, on the fake API
server (the stand-ins); the image (`make images`), its entrypoint, the agent CLIs, git and the
model gateway of the pod's own are real, and the repository is served by `git daemon`. What is
proven is the pod: the init container clones, the agent commits with its own tools against the
model server the worker's configuration names, through its pod's gateway (which holds the key of
the referenced Secret), and the entrypoint pushes the branch and reports.
(tests/integration/test_pods_in_containers.py runs pods from kubectl apply through the worker.)
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from activities.pods import build_pod
from client.settings import Settings
from crds import Polecat
from crds.usage import Budget, ModelUsage, Usage
from launch.gateway import PLACEHOLDER_KEY
from launch.pod_entrypoint import NO_COMMITS, OVER_BUDGET, RATE_LIMITED
from launch.pod_gateway import PodReport
from tests.fake_apiserver import FakeApiServer
from tests.helpers import polecat, wait_until
from tests.integration.conftest import GitServer
from tests.integration.test_agents import WHOLE_FILE, as_reported, commit, program
from tests.kubelet import DockerKubelet, require_image
from tests.model_server import ModelServer, serve

IMAGE = Settings().polecat_image  # the worker's default, built by `make images`
SECRET = {"metadata": {"name": "model-key"}, "stringData": {"api-key": "sk-from-the-secret"}}


@pytest.fixture(scope="module", autouse=True)
def polecat_image() -> None:
    require_image(IMAGE)


async def run_pod(pod: dict[str, Any], node: Path) -> tuple[int, str]:
    """Run the pod to its end under the test kubelet (its files under `node`): the agent
    container's exit code and termination message (on a failure that wrote none, its output's
    tail: FallbackToLogsOnError). A failing clone is the init container's."""
    api = FakeApiServer()
    await api.start()
    try:
        api.create("secrets", "default", SECRET)
        api.create("pods", "default", pod)
        async with DockerKubelet(api, node):

            def ended() -> dict[str, Any] | None:
                (found,) = api.objects("pods", "default")
                return (
                    found["status"]
                    if found.get("status", {}).get("phase") in ("Succeeded", "Failed")
                    else None
                )

            status = await wait_until(ended, "the pod to end", 150)
    finally:
        await api.stop()
    statuses = [*status.get("initContainerStatuses", []), *status["containerStatuses"]]
    ended_ones = [s["state"]["terminated"] for s in statuses if "terminated" in s["state"]]
    last = next((t for t in ended_ones if t["exitCode"] != 0), ended_ones[-1])
    return last["exitCode"], last.get("message", "")


def volume(node: Path, pod: dict[str, Any], name: str) -> Path:
    """Where the test kubelet keeps the pod's volume `name` on this host."""
    return node / "default" / str(pod["metadata"]["name"]) / "volumes" / name


def pod_polecat(server: GitServer, agent: str, **config: Any) -> Polecat:
    return polecat(
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Polecat",
            "metadata": {
                "name": "slit",
                "namespace": "default",
                "uid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            },
            "spec": {
                "rig": "athena",
                "desiredState": "Working",
                "beadID": "gt-7",
                "taskDescription": "Add a file saying who made it, and commit it.",
                "executionMode": "kubernetes",
                "agent": agent,
                "agentConfig": config,
                "kubernetes": {
                    "gitRepository": server.url,
                    "activeDeadlineSeconds": 600,
                    "apiKeySecretRef": {"name": "model-key"},
                },
            },
        }
    )


@pytest.fixture
async def model(request: pytest.FixtureRequest) -> AsyncIterator[ModelServer]:
    async for server in serve(request.param):
        yield server


# agent -> (the model server's script, the provider, the worker's endpoint variable and its path)
PODS = {
    "claude-code": (ModelServer([commit("claude")]), "anthropic", "ANTHROPIC_BASE_URL", ""),
    "opencode": (ModelServer([commit("opencode")]), "openai", "OPENAI_BASE_URL", "/v1"),
    "aider": (ModelServer([], final=WHOLE_FILE), "openai", "OPENAI_BASE_URL", "/v1"),
}


@pytest.mark.parametrize(
    ("agent", "model"), [(agent, PODS[agent][0]) for agent in PODS], indirect=["model"], ids=list(PODS)
)
async def test_each_agents_pod_commits_and_pushes(
    agent: str, model: ModelServer, git_daemon: GitServer, tmp_path: Path
) -> None:
    """The pod of each agent clones the repository, runs the agent (endpoint from the worker's
    configuration, key from the referenced Secret), and pushes the agent's commit on the work
    branch; its termination message names the commit."""
    rig = git_daemon.rig
    _, provider, url_variable, path = PODS[agent]
    resource = pod_polecat(git_daemon, agent, provider=provider, model="test-model", maxTokens=321)
    pod = build_pod(resource, IMAGE, environ={url_variable: f"{model.url}{path}"})

    code, message = await run_pod(pod, tmp_path / "node")

    assert code == 0, message
    assert f"{program(agent)}.txt" in rig.files_on("polecat/slit")
    report = PodReport.model_validate_json(message)
    assert (report.branch, report.commit) == ("polecat/slit", rig.remote_branches()["polecat/slit"])
    assert report.usage is not None
    as_reported(report.usage, model)  # its pod's gateway counted every answer, exactly
    # The gateway added the key to every request; the agent held only the placeholder.
    assert all(any("sk-from-the-secret" in value for value in headers.values()) for headers in model.headers)
    assert not any(PLACEHOLDER_KEY in value for headers in model.headers for value in headers.values())


@pytest.mark.parametrize("model", [ModelServer([], final="I will not.")], indirect=True, ids=["idle"])
async def test_a_pod_whose_agent_made_no_commit_fails(
    model: ModelServer, git_daemon: GitServer, tmp_path: Path
) -> None:
    """claude answers without doing anything and exits 0: the entrypoint pushes nothing and exits
    NO_COMMITS, saying so after the agent's own output (what the pod's status carries)."""
    rig = git_daemon.rig
    resource = pod_polecat(git_daemon, "claude-code")
    pod = build_pod(resource, IMAGE, environ={"ANTHROPIC_BASE_URL": model.url})

    code, output = await run_pod(pod, tmp_path / "node")

    assert code == NO_COMMITS
    assert "I will not." in output and "left no commit on polecat/slit" in output
    assert "polecat/slit" not in rig.remote_branches()


# A custom agent that shows what it can see: its environment.
SNOOP = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


async def test_the_key_stays_out_of_the_agents_reach(git_daemon: GitServer, tmp_path: Path) -> None:
    """In a pod the key is the gateway's: the agent's environment holds the placeholder under the
    provider's variable, and its base URL on the pod's gateway. (The entrypoint, which holds the
    key, is unreadable to it: test_pod_entrypoint.)"""
    resource = pod_polecat(
        git_daemon,
        "custom",
        provider="anthropic",
        command=["python3", "-c", SNOOP, "/home/polecat/seen.json"],
    )
    pod = build_pod(resource, IMAGE, environ={"ANTHROPIC_BASE_URL": "http://models.invalid"})

    code, message = await run_pod(pod, tmp_path / "node")

    assert code == 0, message
    env = json.loads((volume(tmp_path / "node", pod, "home") / "seen.json").read_text())
    assert "sk-from-the-secret" not in json.dumps(env)
    assert env["ANTHROPIC_API_KEY"] == PLACEHOLDER_KEY
    assert env["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("model", [ModelServer([commit("claude")])], indirect=True, ids=["claude"])
async def test_a_pod_over_its_budget_is_stopped_and_says_what_it_spent(
    model: ModelServer, git_daemon: GitServer, tmp_path: Path
) -> None:
    """A budget the first answer spends: the pod's entrypoint stops claude within seconds and exits
    OVER_BUDGET; its termination message says why and what was spent, counting the earlier
    attempts' spend too."""
    resource = pod_polecat(git_daemon, "claude-code")
    resource.spec.budget = Budget(max_tokens=100)
    earlier = Usage.of([ModelUsage(model="claude-sonnet-4-5", input_tokens=7, requests=1, cost_usd=0.5)])
    pod = build_pod(resource, IMAGE, environ={"ANTHROPIC_BASE_URL": model.url}, spent=earlier)

    code, message = await run_pod(pod, tmp_path / "node")

    assert code == OVER_BUDGET, message
    report = PodReport.model_validate_json(message)
    assert report.over_budget is not None and "spec.budget.maxTokens 100" in report.over_budget
    assert report.usage is not None and report.usage.requests == len(model.reported) + 1
    assert next(m for m in report.usage.models if m.model == "claude-sonnet-4-5").input_tokens == 7


@pytest.mark.parametrize(
    "model", [ModelServer([commit("claude")], limit_after=1, limit_for=600)], indirect=True, ids=["claude"]
)
async def test_a_pod_that_meets_a_long_limit_is_stopped_with_its_reset_and_its_commit_pushed(
    model: ModelServer, git_daemon: GitServer, tmp_path: Path
) -> None:
    """A limit of ten minutes, longer than the pod's gateway holds a request: the entrypoint stops
    claude, pushes the commit it made before the limit, and exits RATE_LIMITED with the reset time
    (the worker parks the polecat until then)."""
    rig = git_daemon.rig
    resource = pod_polecat(git_daemon, "claude-code")
    pod = build_pod(resource, IMAGE, environ={"ANTHROPIC_BASE_URL": model.url}, hold=1)
    before = time.time()

    code, message = await run_pod(pod, tmp_path / "node")

    assert code == RATE_LIMITED, message
    report = PodReport.model_validate_json(message)
    assert report.limit is not None and report.limit.provider == "anthropic"
    assert before + 590 < report.limit.until < time.time() + 610
    assert "claude.txt" in rig.files_on("polecat/slit")
    assert report.commit == rig.remote_branches()["polecat/slit"]
