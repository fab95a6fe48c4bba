"""The pod of a kubernetes-mode polecat, validated offline against the Kubernetes schema."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from activities.pods import AGENT_DIR, build_pod, pod_name
from contracts.beads import Bead
from crds.polecat import Polecat
from crds.usage import Budget, ModelUsage, Usage
from launch.agents import agent_command, prompt_for
from launch.gateway import PLACEHOLDER_KEY, POD_GATEWAY_BASE, agent_environ
from launch.pod_gateway import USAGE_MARK, PodGateway, PodReport, usage_in_log
from tests.helpers import polecat

IMAGE = "registry.example/gastown/polecat:1"


def k8s_polecat(agent: str = "claude-code", **kubernetes: Any) -> Polecat:
    return polecat(
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Polecat",
            "metadata": {
                "name": "slit",
                "namespace": "gastown-system",
                "uid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            },
            "spec": {
                "rig": "athena",
                "desiredState": "Working",
                "beadID": "at-1236",
                "taskDescription": 'fix it"; rm -rf / #',
                "executionMode": "kubernetes",
                "agent": agent,
                "agentConfig": {"model": "claude-sonnet-4-20250514"},
                "kubernetes": {
                    "gitRepository": "git@github.com:example/athena.git",
                    "activeDeadlineSeconds": 3600,
                    "gitSecretRef": {"name": "athena-deploy-key"},
                    "apiKeySecretRef": {"name": "anthropic"},
                    **kubernetes,
                },
            },
        }
    )


def agent_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    (container,) = containers
    return container


@pytest.mark.parametrize("agent", ["claude-code", "opencode", "aider"])
def test_pod_is_valid_kubernetes(agent: str) -> None:
    """The pod passes strict validation against the Kubernetes 1.37 schema."""
    pod = build_pod(k8s_polecat(agent, claudeCredsSecretRef={"name": "claude-oauth"}), IMAGE)
    assert kubernetes_validate.validate(pod, "1.37.0", strict=True) == "1.37"


def test_restricted_security_and_completion() -> None:
    """Non-root, read-only root, no escalation, drop ALL, RuntimeDefault seccomp; one container, never restarted."""
    pod = build_pod(k8s_polecat(), IMAGE)
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 3600
    assert len(spec["containers"]) == 1  # no sidecar that could keep the pod from completing
    for container in [*spec["initContainers"], *spec["containers"]]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}


def test_secrets_are_referenced_never_copied() -> None:
    """The git key is a read-only 0400 secret volume; the API key a secretKeyRef (default key
    api-key) for the pod's gateway only: the agent's variable holds the gateway's placeholder."""
    pod = build_pod(k8s_polecat(), IMAGE)
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes["git-ssh"]["secret"] == {"secretName": "athena-deploy-key", "defaultMode": 0o400}
    mounts = agent_container(pod)["volumeMounts"]
    assert {"name": "git-ssh", "mountPath": "/etc/gastown/git", "readOnly": True} in mounts
    env = {item["name"]: item for item in agent_container(pod)["env"]}
    assert env["ANTHROPIC_API_KEY"] == {"name": "ANTHROPIC_API_KEY", "value": PLACEHOLDER_KEY}
    assert env["GT_GATEWAY_KEY"] == {
        "name": "GT_GATEWAY_KEY",
        "valueFrom": {"secretKeyRef": {"name": "anthropic", "key": "api-key"}},
    }
    text = json.dumps(pod)
    assert text.count("athena-deploy-key") == 1  # named once, as the volume's source


@pytest.mark.parametrize("agent", ["claude-code", "opencode", "aider"])
def test_agent_runs_the_local_command_line(agent: str) -> None:
    """The agent container runs exactly the command line local mode runs (with the worker's endpoints),
    behind the entrypoint, which requires a commit of a named agent."""
    resource = k8s_polecat(agent)
    environ = {"ANTHROPIC_BASE_URL": "http://models.internal"}
    command = agent_container(build_pod(resource, IMAGE, environ=environ))["command"]
    prompt = prompt_for("slit", "athena", "polecat/slit", resource.spec)
    expected = agent_command(resource.spec, prompt, agent_environ(environ, POD_GATEWAY_BASE), AGENT_DIR).argv
    assert command[: command.index("--")] == [
        "python3", "-m", "launch.pod_entrypoint", "run", "--git-secret", "/etc/gastown/git", "--require-commit",
        "--branch", "polecat/slit", "--agent-dir", AGENT_DIR,
    ]  # fmt: skip
    assert command[command.index("--") + 1 :] == expected


@pytest.mark.parametrize(
    ("agent", "provider", "variables", "gateway_reads"),
    [
        ("claude-code", None, ["ANTHROPIC_API_KEY"], ["ANTHROPIC_API_KEY"]),
        ("claude-code", "litellm", ["ANTHROPIC_AUTH_TOKEN"], ["LITELLM_PROXY_API_KEY"]),
        ("opencode", "openai", ["OPENAI_API_KEY"], ["OPENAI_API_KEY"]),
        ("aider", "litellm", ["LITELLM_PROXY_API_KEY"], ["LITELLM_PROXY_API_KEY"]),
        ("aider", "ollama", [], []),
    ],
)
def test_the_api_key_goes_to_the_pods_gateway(
    agent: str, provider: str | None, variables: list[str], gateway_reads: list[str]
) -> None:
    """Each variable the agent reads its key from holds the gateway's placeholder, and the pod's
    gateway has the apiKeySecretRef for the provider's own variable (no key for Ollama)."""
    resource = k8s_polecat(agent)
    assert resource.spec.agent_config is not None
    resource.spec.agent_config.provider = provider  # type: ignore[assignment]
    env = agent_container(build_pod(resource, IMAGE))["env"]
    assert [item["name"] for item in env if item.get("value") == PLACEHOLDER_KEY] == variables
    keyed = [item for item in env if "valueFrom" in item]
    expected = [
        {"name": "GT_GATEWAY_KEY", "valueFrom": {"secretKeyRef": {"name": "anthropic", "key": "api-key"}}}
    ]
    assert keyed == (expected if variables else [])
    settings = PodGateway.model_validate_json(
        next(item["value"] for item in env if item["name"] == "GT_GATEWAY")
    )
    assert settings.key_variables == gateway_reads


def test_the_agent_reaches_its_providers_through_the_pods_gateway() -> None:
    """Every provider's URL variable names the pod's gateway (the entrypoint fills in where it is);
    the worker's own endpoints, prices, hold and the polecat's budget and earlier spend go to the
    gateway's settings."""
    resource = k8s_polecat("claude-code")
    resource.spec.budget = Budget(max_cost_usd=2.5)
    spent = Usage.of([ModelUsage(model="claude-sonnet-4-5", input_tokens=10, requests=1, cost_usd=0.01)])
    environ = {"ANTHROPIC_BASE_URL": "http://models.internal/anthropic", "OPENAI_API_KEY": "sk-worker"}
    pod = build_pod(resource, IMAGE, environ=environ, spent=spent, hold=7)
    env = {item["name"]: item.get("value") for item in agent_container(pod)["env"]}
    assert env["ANTHROPIC_BASE_URL"] == f"{POD_GATEWAY_BASE}/anthropic/anthropic"
    assert env["OPENAI_BASE_URL"] == f"{POD_GATEWAY_BASE}/openai/v1"
    assert "sk-worker" not in json.dumps(pod)  # the worker's own keys never go to a pod
    settings = PodGateway.model_validate_json(env["GT_GATEWAY"] or "")
    assert settings.upstreams == {"ANTHROPIC_BASE_URL": "http://models.internal/anthropic"}
    assert settings.budget == resource.spec.budget
    assert settings.spent == spent.models
    assert settings.hold == 7
    assert settings.prices["claude-sonnet-4-5"].output == 15


def test_agent_files_travel_to_the_entrypoint() -> None:
    """The files an agent's command line names (aider's model settings) are in the pod's
    environment for the entrypoint to write into the agent directory."""
    resource = k8s_polecat("aider")
    assert resource.spec.agent_config is not None
    resource.spec.agent_config.max_tokens = 99
    env = {item["name"]: item.get("value") for item in agent_container(build_pod(resource, IMAGE))["env"]}
    files = json.loads(env["GT_AGENT_FILES"])
    assert json.loads(files["aider.model.settings.yml"])[0]["extra_params"] == {"max_tokens": 99}


def test_clone_uses_base_and_work_branch() -> None:
    """The init step clones gitRepository at gitBranch and creates workBranch."""
    pod = build_pod(k8s_polecat(gitBranch="develop", workBranch="feature/slit"), IMAGE)
    (clone,) = pod["spec"]["initContainers"]
    command = clone["command"]
    assert command[command.index("--repository") + 1] == "git@github.com:example/athena.git"
    assert command[command.index("--base") + 1] == "develop"
    assert command[command.index("--branch") + 1] == "feature/slit"


def test_name_labels_owner_image_and_resources() -> None:
    """Name and labels carry the uid; the Polecat owns the pod; image and resources follow spec, then defaults."""
    resource = k8s_polecat(image="mine:2", resources={"limits": {"memory": "8Gi"}})
    pod = build_pod(resource, IMAGE)
    assert pod["metadata"]["name"] == pod_name(resource) == "polecat-slit-0a1b2c3d"
    assert pod["metadata"]["labels"]["gastown.gastown.io/polecat-uid"] == resource.metadata.uid
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Polecat", resource.metadata.uid, True)
    container = agent_container(pod)
    assert container["image"] == "mine:2"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "8Gi"},
    }
    assert agent_container(build_pod(k8s_polecat(), IMAGE))["image"] == IMAGE


def test_pod_prompt_carries_the_bead_text() -> None:
    """A pod's prompt, like a local one, carries the bead's title and acceptance criteria."""
    bead = Bead(id="gt-1", title="Oil the war rig", acceptance_criteria="No squeak.")
    env = {
        item["name"]: item.get("value")
        for item in agent_container(build_pod(k8s_polecat(), IMAGE, bead))["env"]
    }
    assert "Bead gt-1: Oil the war rig" in env["GT_PROMPT"] and "No squeak." in env["GT_PROMPT"]


def test_a_termination_message_fits_what_kubernetes_keeps() -> None:
    """The report is cut to Kubernetes' 4 KiB by its tail, keeping the tail's end: still JSON, with
    the branch, commit and usage whole."""
    usage = Usage.of([ModelUsage(model="claude-sonnet-4-5", input_tokens=10, requests=1, cost_usd=0.01)])
    long_output = "".join(f'line {n} <"escaped">\n' for n in range(2000))
    report = PodReport(branch="polecat/slit", commit="4b825dc6", usage=usage, tail=long_output)
    message = report.message()
    assert len(message.encode()) <= 4096
    read = PodReport.model_validate_json(message)
    assert (read.branch, read.commit, read.usage) == ("polecat/slit", "4b825dc6", usage)
    assert read.tail.endswith('line 1999 <"escaped">\n')


def test_the_running_total_is_read_back_from_the_pods_log() -> None:
    """The latest usage line the entrypoint wrote wins, wherever the agent's output left the line."""
    first = Usage.of([ModelUsage(model="m", input_tokens=1, requests=1)])
    latest = Usage.of([ModelUsage(model="m", input_tokens=5, requests=2)])
    log = "\n".join(
        [
            f"{USAGE_MARK}{first.model_dump_json(by_alias=True)}",
            f"half a line of the agent's{USAGE_MARK}{latest.model_dump_json(by_alias=True)}",
            "thinking...",
            f"{USAGE_MARK}{{not json",
        ]
    )
    assert usage_in_log(log) == latest
    assert usage_in_log("no usage here") is None
