"""A kubernetes-mode polecat as a Pod: built from the spec, nothing else.

Pure functions: the pod manifest is unit-tested and validated offline against
the Kubernetes schema. The agent's command line is the one local mode runs
(`activities.agents`), wrapped by the image's entrypoint
(`activities.pod_entrypoint`), which pushes the work branch on success.

Secrets are referenced, never copied: the git key is a read-only secret
volume, OAuth credentials another, the API key a `secretKeyRef`.
"""

from __future__ import annotations

from typing import Any

from activities.agents import agent_command, agent_environment, prompt_for
from crds.polecat import Polecat, ResourceList

UID = 65532  # the image's non-root user, as distroless images use
HOME = "/home/polecat"
WORKSPACE = "/workspace"
REPO = f"{WORKSPACE}/repo"
GIT_SECRET_DIR = "/etc/gastown/git"
CLAUDE_SECRET_DIR = "/etc/gastown/claude"
DEFAULT_REQUESTS = ResourceList(cpu="500m", memory="1Gi")
DEFAULT_LIMITS = ResourceList(cpu="2", memory="4Gi")
LABEL_POLECAT = "gastown.gastown.io/polecat"
LABEL_UID = "gastown.gastown.io/polecat-uid"


def pod_name(polecat: Polecat) -> str:
    """Deterministic and unique per incarnation, so a restarted worker adopts its pod."""
    uid = (polecat.metadata.uid or "nouid").replace("-", "")[:8]
    return f"polecat-{polecat.name}-{uid}"


def _resources(polecat: Polecat) -> dict[str, dict[str, str]]:
    wanted = polecat.spec.kubernetes.resources if polecat.spec.kubernetes else None
    requests = (wanted.requests if wanted and wanted.requests else None) or ResourceList()
    limits = (wanted.limits if wanted and wanted.limits else None) or ResourceList()
    return {
        "requests": {**DEFAULT_REQUESTS.to_wire(), **requests.to_wire()},
        "limits": {**DEFAULT_LIMITS.to_wire(), **limits.to_wire()},
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_pod(polecat: Polecat, default_image: str) -> dict[str, Any]:
    """The Pod of a kubernetes-mode polecat."""
    k8s = polecat.spec.kubernetes
    if k8s is None or k8s.git_repository is None or k8s.active_deadline_seconds is None:
        raise ValueError(f"{polecat.ref}: not a valid kubernetes-mode polecat")
    branch = polecat.work_branch
    image = k8s.image or default_image
    prompt = prompt_for(polecat.name, polecat.spec.rig, branch, polecat.spec)
    command = agent_command(polecat.spec, prompt)

    env: list[dict[str, Any]] = [{"name": "HOME", "value": HOME}]
    env += [
        {"name": key, "value": value}
        for key, value in agent_environment(polecat.name, branch, polecat.spec).items()
    ]
    env += [{"name": "GT_PROMPT", "value": prompt}]  # the entrypoint turns it into $GT_PROMPT_FILE
    env += [{"name": key, "value": value} for key, value in command.env.items()]
    if k8s.api_key_secret_ref is not None:
        ref = k8s.api_key_secret_ref
        variable = (
            "OPENAI_API_KEY"
            if polecat.spec.agent_config and polecat.spec.agent_config.provider == "openai"
            else "ANTHROPIC_API_KEY"
        )
        env.append({"name": variable, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})

    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": WORKSPACE},
        {"name": "home", "mountPath": HOME},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    entrypoint_options: list[str] = []
    if k8s.git_secret_ref is not None:
        volumes.append(
            {"name": "git-ssh", "secret": {"secretName": k8s.git_secret_ref.name, "defaultMode": 0o400}}
        )
        mounts.append({"name": "git-ssh", "mountPath": GIT_SECRET_DIR, "readOnly": True})
        entrypoint_options += ["--git-secret", GIT_SECRET_DIR]
    agent_mounts = list(mounts)
    agent_options = list(entrypoint_options)
    if k8s.claude_creds_secret_ref is not None:
        volumes.append(
            {
                "name": "claude-creds",
                "secret": {"secretName": k8s.claude_creds_secret_ref.name, "defaultMode": 0o400},
            }
        )
        agent_mounts.append({"name": "claude-creds", "mountPath": CLAUDE_SECRET_DIR, "readOnly": True})
        agent_options += ["--claude-creds", CLAUDE_SECRET_DIR]

    entrypoint = ["python3", "-m", "activities.pod_entrypoint"]
    clone = {
        "name": "clone",
        "image": image,
        "command": [
            *entrypoint, "clone", *entrypoint_options,
            "--repository", k8s.git_repository, "--base", k8s.git_branch, "--branch", branch, "--into", REPO,
        ],
        "env": env[:1],
        "volumeMounts": mounts,
        "securityContext": _container_security(),
        "resources": {"requests": DEFAULT_REQUESTS.to_wire(), "limits": DEFAULT_LIMITS.to_wire()},
    }  # fmt: skip
    agent = {
        "name": "agent",
        "image": image,
        "workingDir": REPO,
        "command": [*entrypoint, "run", *agent_options, "--branch", branch, "--", *command.argv],
        "env": env,
        "volumeMounts": agent_mounts,
        "resources": _resources(polecat),
        "securityContext": _container_security(),
        # Success writes branch and commit here; a failure falls back to the log's tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(polecat),
            "namespace": polecat.namespace,
            "labels": {
                "app.kubernetes.io/name": "gastown-polecat",
                "app.kubernetes.io/managed-by": "gastown",
                LABEL_POLECAT: polecat.name,
                LABEL_UID: polecat.metadata.uid or "",
                "gastown.gastown.io/rig": polecat.spec.rig,
            },
            "ownerReferences": [
                {
                    "apiVersion": polecat.api_version,
                    "kind": "Polecat",
                    "name": polecat.name,
                    "uid": polecat.metadata.uid or "",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": k8s.active_deadline_seconds,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": [clone],
            "containers": [agent],  # no sidecar: nothing may keep the pod from completing
            "volumes": volumes,
        },
    }
