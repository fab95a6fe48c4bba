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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from git import Repo

from activities.pods import build_pod
from crds import Polecat
from launch.pod_entrypoint import NO_COMMITS
from tests.helpers import REPO_ROOT, GitRig, make_git_rig, polecat
from tests.integration.test_agents import WHOLE_FILE, commit, program
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
    code and termination message (or, on failure, its output: FallbackToLogsOnError)."""
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
            return process.returncode or 0, output.decode()
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
    assert json.loads(message) == {"branch": "polecat/slit", "commit": rig.remote_branches()["polecat/slit"]}
    assert not Repo(tmp_path / "pod" / "elsewhere").heads  # nothing was committed where $PWD pointed
    assert all(any("sk-from-the-secret" in value for value in headers.values()) for headers in model.headers)


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
