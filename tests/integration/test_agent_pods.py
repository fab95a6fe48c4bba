"""Each agent's pod, run as its containers would run, with the real agent CLIs.

No container runtime or kubelet runs here, so this is the one stand-in: the
pod spec that `build_pod` makes is run by `run_pod` below as local processes,
taking from the spec exactly what a kubelet takes (each container's command,
working directory and environment, secretKeyRefs resolved from a Secret) and
from the Dockerfile the image's PATH. The image's paths (/workspace,
/home/polecat) are mapped into a temporary directory and /opt/gastown onto
this checkout. What is proven is the pod's command line and environment: the
init container clones, the agent commits with its own tools against the model
server the worker's configuration names, and the entrypoint pushes the branch.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from git import Repo

from activities.pods import build_pod
from crds import Polecat
from crds.usage import Budget, ModelUsage, Usage
from launch.gateway import PLACEHOLDER_KEY
from launch.pod_entrypoint import NO_COMMITS, OVER_BUDGET, RATE_LIMITED
from launch.pod_gateway import PodReport
from tests.helpers import REPO_ROOT, GitRig, make_git_rig, polecat
from tests.integration.test_agents import WHOLE_FILE, as_reported, commit, program
from tests.model_server import ModelServer, serve

IMAGE_ROOT = "/opt/gastown"
SECRETS = {"model-key": {"api-key": "sk-from-the-secret"}}


def image_path() -> str:
    """The image's PATH, from the Dockerfile, its /opt/gastown being this checkout."""
    found = re.search(r"^ENV .*\bPATH=(\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert found, "the Dockerfile sets PATH"
    return found.group(1).replace(IMAGE_ROOT, str(REPO_ROOT))


async def run_pod(pod: dict[str, Any], root: Path) -> tuple[int, str]:
    """Run the pod's init containers, then its container, as the kubelet would; the container's exit
    code and termination message (on a failure that wrote none, its output: FallbackToLogsOnError)."""
    mounts = {"/workspace": root / "workspace", "/home/polecat": root / "home", "/tmp": root / "tmp"}
    for path in mounts.values():
        path.mkdir(parents=True, exist_ok=True)
    decoy = root / "elsewhere"  # a repository the agent must not work in (opencode follows $PWD)
    Repo.init(decoy)

    def local(text: str) -> str:
        for mount, path in mounts.items():
            if text == mount or text.startswith(f"{mount}/"):
                return str(path) + text[len(mount) :]
        return text

    def environment(container: dict[str, Any]) -> dict[str, str]:
        env = {
            "PATH": image_path(),
            "PYTHONPATH": str(REPO_ROOT),
            "GT_TERMINATION_LOG": str(root / "message"),
            "PWD": str(decoy),  # not the container's directory: the entrypoint must set it right
        }
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            env[item["name"]] = SECRETS[ref["name"]][ref["key"]] if ref else local(item["value"])
        return env

    def command(container: dict[str, Any]) -> list[str]:
        argv = [local(arg) for arg in container["command"]]
        return [sys.executable, *argv[1:]] if argv[0] == "python3" else argv

    for container in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
        process = await asyncio.create_subprocess_exec(
            *command(container),
            cwd=local(container.get("workingDir", "/workspace")),
            env=environment(container),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        if process.returncode != 0:
            written = root / "message"
            message = written.read_text() if written.exists() else ""
            return process.returncode or 0, message or output.decode()
    return 0, (root / "message").read_text()


def pod_polecat(rig: GitRig, agent: str, **config: Any) -> Polecat:
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
                    "gitRepository": f"file://{rig.remote}",
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
async def test_each_agents_pod_commits_and_pushes(agent: str, model: ModelServer, tmp_path: Path) -> None:
    """The pod of each agent clones the repository, runs the agent (endpoint from the worker's
    configuration, key from the referenced Secret), and pushes the agent's commit on the work
    branch; its termination message names the commit."""
    rig = make_git_rig(tmp_path / "rig")
    _, provider, url_variable, path = PODS[agent]
    resource = pod_polecat(rig, agent, provider=provider, model="test-model", maxTokens=321)
    pod = build_pod(resource, "gastown/operator:test", environ={url_variable: f"{model.url}{path}"})

    code, message = await run_pod(pod, tmp_path / "pod")

    assert code == 0, message
    assert f"{program(agent)}.txt" in rig.files_on("polecat/slit")
    report = PodReport.model_validate_json(message)
    assert (report.branch, report.commit) == ("polecat/slit", rig.remote_branches()["polecat/slit"])
    assert report.usage is not None
    as_reported(report.usage, model)  # its pod's gateway counted every answer, exactly
    assert not Repo(tmp_path / "pod" / "elsewhere").heads  # nothing was committed where $PWD pointed
    # The gateway added the key to every request; the agent held only the placeholder.
    assert all(any("sk-from-the-secret" in value for value in headers.values()) for headers in model.headers)
    assert not any(PLACEHOLDER_KEY in value for headers in model.headers for value in headers.values())


@pytest.mark.parametrize("model", [ModelServer([], final="I will not.")], indirect=True, ids=["idle"])
async def test_a_pod_whose_agent_made_no_commit_fails(model: ModelServer, tmp_path: Path) -> None:
    """claude answers without doing anything and exits 0: the entrypoint pushes nothing and exits
    NO_COMMITS, saying so after the agent's own output (what the pod's status carries)."""
    rig = make_git_rig(tmp_path / "rig")
    resource = pod_polecat(rig, "claude-code")
    pod = build_pod(resource, "gastown/operator:test", environ={"ANTHROPIC_BASE_URL": model.url})

    code, output = await run_pod(pod, tmp_path / "pod")

    assert code == NO_COMMITS
    assert "I will not." in output and "left no commit on polecat/slit" in output
    assert "polecat/slit" not in rig.remote_branches()


# A custom agent that shows what it can see: its environment.
SNOOP = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


async def test_the_key_stays_out_of_the_agents_reach(tmp_path: Path) -> None:
    """In a pod the key is the gateway's: the agent's environment holds the placeholder under the
    provider's variable, and its base URL on the pod's gateway. (The entrypoint, which holds the
    key, is unreadable to it: test_pod_entrypoint.)"""
    rig = make_git_rig(tmp_path / "rig")
    seen = tmp_path / "pod" / "home" / "seen.json"  # /home/polecat/seen.json in the pod
    resource = pod_polecat(
        rig, "custom", provider="anthropic", command=["python3", "-c", SNOOP, "/home/polecat/seen.json"]
    )
    pod = build_pod(
        resource, "gastown/operator:test", environ={"ANTHROPIC_BASE_URL": "http://models.invalid"}
    )

    code, message = await run_pod(pod, tmp_path / "pod")

    assert code == 0, message
    env = json.loads(seen.read_text())
    assert "sk-from-the-secret" not in json.dumps(env)
    assert env["ANTHROPIC_API_KEY"] == PLACEHOLDER_KEY
    assert env["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("model", [ModelServer([commit("claude")])], indirect=True, ids=["claude"])
async def test_a_pod_over_its_budget_is_stopped_and_says_what_it_spent(
    model: ModelServer, tmp_path: Path
) -> None:
    """A budget the first answer spends: the pod's entrypoint stops claude within seconds and exits
    OVER_BUDGET; its termination message says why and what was spent, counting the earlier
    attempts' spend too."""
    rig = make_git_rig(tmp_path / "rig")
    resource = pod_polecat(rig, "claude-code")
    resource.spec.budget = Budget(max_tokens=100)
    earlier = Usage.of([ModelUsage(model="claude-sonnet-4-5", input_tokens=7, requests=1, cost_usd=0.5)])
    pod = build_pod(
        resource, "gastown/operator:test", environ={"ANTHROPIC_BASE_URL": model.url}, spent=earlier
    )

    code, message = await run_pod(pod, tmp_path / "pod")

    assert code == OVER_BUDGET, message
    report = PodReport.model_validate_json(message)
    assert report.over_budget is not None and "spec.budget.maxTokens 100" in report.over_budget
    assert report.usage is not None and report.usage.requests == len(model.reported) + 1
    assert next(m for m in report.usage.models if m.model == "claude-sonnet-4-5").input_tokens == 7


@pytest.mark.parametrize(
    "model", [ModelServer([commit("claude")], limit_after=1, limit_for=600)], indirect=True, ids=["claude"]
)
async def test_a_pod_that_meets_a_long_limit_is_stopped_with_its_reset_and_its_commit_pushed(
    model: ModelServer, tmp_path: Path
) -> None:
    """A limit of ten minutes, longer than the pod's gateway holds a request: the entrypoint stops
    claude, pushes the commit it made before the limit, and exits RATE_LIMITED with the reset time
    (the worker parks the polecat until then)."""
    rig = make_git_rig(tmp_path / "rig")
    resource = pod_polecat(rig, "claude-code")
    pod = build_pod(resource, "gastown/operator:test", environ={"ANTHROPIC_BASE_URL": model.url}, hold=1)
    before = time.time()

    code, message = await run_pod(pod, tmp_path / "pod")

    assert code == RATE_LIMITED, message
    report = PodReport.model_validate_json(message)
    assert report.limit is not None and report.limit.provider == "anthropic"
    assert before + 590 < report.limit.until < time.time() + 610
    assert "claude.txt" in rig.files_on("polecat/slit")
    assert report.commit == rig.remote_branches()["polecat/slit"]
