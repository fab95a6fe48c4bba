"""A kubernetes-mode polecat as a Pod: built from the spec, started, watched, deleted.

`build_pod` and `pod_outcome` are pure: the manifest is unit-tested and
validated offline against the Kubernetes schema, and the reading of a pod's
status is tested case by case. The agent's command line is the one local mode runs
(`launch.agents`), wrapped by the image's entrypoint
(`launch.pod_entrypoint`), which runs it through a model gateway of the pod's
own (`launch.pod_gateway`) and pushes the work branch on success.

Secrets are referenced, never copied: the git key is a read-only secret
volume, OAuth credentials another, the API key a `secretKeyRef` that only the
entrypoint's gateway reads.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes.aio import client, watch
from kubernetes.aio.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.kube import KubeConnection
from activities.metrics import started_counter
from contracts import pods as contract
from contracts.beads import Bead
from contracts.pods import PodExit, PodLaunch, PodRef
from contracts.tmux import RateLimit
from crds.common import short_uid
from crds.polecat import NAMED_AGENTS, Polecat, ResourceList
from crds.usage import Usage
from launch.agents import PROVIDERS, agent_command, agent_environment, prompt_for
from launch.gateway import PLACEHOLDER_KEY, POD_GATEWAY_BASE, agent_environ
from launch.gateway_server import HOLD
from launch.pod_entrypoint import NO_COMMITS
from launch.pod_gateway import PodGateway, PodReport, upstreams_of, usage_in_log
from launch.usage import Prices

UID = 65532  # the image's non-root user, as distroless images use
HOME = "/home/polecat"
WORKSPACE = "/workspace"
REPO = f"{WORKSPACE}/repo"
GIT_SECRET_DIR = "/etc/gastown/git"
CLAUDE_SECRET_DIR = "/etc/gastown/claude"
AGENT_DIR = f"{HOME}/.gastown"  # the files an agent's command line names, written by the entrypoint
DEFAULT_REQUESTS = ResourceList(cpu="500m", memory="1Gi")
DEFAULT_LIMITS = ResourceList(cpu="2", memory="4Gi")
LABEL_POLECAT = "gastown.gastown.io/polecat"
LABEL_UID = "gastown.gastown.io/polecat-uid"


def pod_name(polecat: Polecat, attempt: int = 0) -> str:
    """Deterministic and unique per incarnation and attempt, so a restarted worker adopts its pod
    and a Witness's restart never meets the pod it replaces."""
    name = f"polecat-{polecat.name}-{short_uid(polecat.metadata.uid)}"
    return f"{name}-r{attempt}" if attempt else name


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


def build_pod(
    polecat: Polecat,
    default_image: str,
    bead: Bead | None = None,
    attempt: int = 0,
    environ: Mapping[str, str] | None = None,
    *,
    resume: bool = False,
    follow_up: str | None = None,
    spent: Usage | None = None,
    prices: Prices | None = None,
    hold: float = HOLD,
) -> dict[str, Any]:
    """The Pod of a kubernetes-mode polecat.

    `environ`: the worker's environment, where providers' endpoints are configured (local mode reads
    the same variables). The agent reaches them through its pod's own gateway
    (`launch.pod_gateway`), which holds the key of the polecat's apiKeySecretRef; the agent gets a
    placeholder under each variable it reads a key from. `spent`: the earlier attempts' usage, which
    the budget covers too; `resume`: a later attempt, which goes on from the pushed branch, with
    people's `follow_up` in its prompt if they sent one.
    """
    k8s = polecat.spec.kubernetes
    if k8s is None or k8s.git_repository is None or k8s.active_deadline_seconds is None:
        raise ValueError(f"{polecat.ref}: not a valid kubernetes-mode polecat")
    branch = polecat.work_branch
    image = k8s.image or default_image
    prompt = prompt_for(polecat.name, polecat.spec.rig, branch, polecat.spec, bead, resume, follow_up)
    # The providers' URLs as the agent gets them: on its pod's gateway (the entrypoint sets the port).
    through_gateway = agent_environ(environ or {}, POD_GATEWAY_BASE)
    command = agent_command(polecat.spec, prompt, through_gateway, AGENT_DIR)

    # What the agent finds in its environment (its own keys only as the gateway's placeholder).
    values = {
        "HOME": HOME,
        **agent_environment(polecat.name, branch, polecat.spec),
        "GT_PROMPT": prompt,  # the entrypoint turns it into $GT_PROMPT_FILE
        **{name: through_gateway[name] for provider in PROVIDERS.values() for name in provider.url_variables},
        **command.env,
    }
    if command.files:  # the entrypoint writes them into AGENT_DIR
        values["GT_AGENT_FILES"] = json.dumps(command.files)
    gateway = PodGateway(
        upstreams=upstreams_of(environ or {}),
        budget=polecat.spec.budget,
        spent=spent.models if spent else [],
        prices=(prices or Prices()).table,
        hold=hold,
    )
    if k8s.api_key_secret_ref is not None:
        # Without a provider the agent picks its own: the key goes where Anthropic's is read.
        named = polecat.spec.agent_config is not None and polecat.spec.agent_config.provider is not None
        keys = dict(command.keys) or ({} if named else {"ANTHROPIC_API_KEY": "ANTHROPIC_API_KEY"})
        values.update(dict.fromkeys(keys, PLACEHOLDER_KEY))
        gateway.key_variables = sorted(set(keys.values()))
    values["GT_GATEWAY"] = gateway.model_dump_json(exclude_defaults=True)
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in values.items()]
    if k8s.api_key_secret_ref is not None and gateway.key_variables:  # for the gateway, not the agent
        ref = {"name": k8s.api_key_secret_ref.name, "key": k8s.api_key_secret_ref.key}
        env.append({"name": "GT_GATEWAY_KEY", "valueFrom": {"secretKeyRef": ref}})

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
    if polecat.spec.agent in NAMED_AGENTS:
        agent_options += ["--require-commit"]

    entrypoint = ["python3", "-m", "launch.pod_entrypoint"]
    clone = {
        "name": "clone",
        "image": image,
        "command": [
            *entrypoint, "clone", *entrypoint_options,
            "--repository", k8s.git_repository, "--base", k8s.git_branch, "--branch", branch, "--into", REPO,
        ],
        "env": [{"name": "HOME", "value": HOME}],
        "volumeMounts": mounts,
        "securityContext": _container_security(),
        "resources": {"requests": DEFAULT_REQUESTS.to_wire(), "limits": DEFAULT_LIMITS.to_wire()},
        "terminationMessagePolicy": "FallbackToLogsOnError",  # git's own words when it fails
    }  # fmt: skip
    agent = {
        "name": "agent",
        "image": image,
        "workingDir": REPO,
        "command": [
            *entrypoint,
            "run",
            *agent_options,
            "--branch",
            branch,
            "--agent-dir",
            AGENT_DIR,
            "--",
            *command.argv,
        ],
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
            "name": pod_name(polecat, attempt),
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


# --- the activities ------------------------------------------------------------

# Waiting reasons that never resolve by themselves: the polecat fails with them.
FATAL_WAITING = {"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}
WATCH_SLICE_SECONDS = 5
USAGE_READ_SECONDS = 10  # how often the watcher reads the pod's log for the agent's spend so far
USAGE_LOG_LINES = 500  # the log's tail it looks in


def _terminated(statuses: list[dict[str, Any]] | None, name: str) -> dict[str, Any] | None:
    for status in statuses or []:
        if status.get("name") == name:
            terminated: dict[str, Any] | None = (status.get("state") or {}).get("terminated")
            return terminated
    return None


def _report(terminated: dict[str, Any]) -> PodReport:
    """The entrypoint's termination message; the log's tail if it wrote none (FallbackToLogsOnError:
    it was killed, out of memory say)."""
    message = terminated.get("message") or ""
    try:
        return PodReport.model_validate_json(message)
    except ValueError:
        return PodReport(tail=message)


def pod_outcome(pod: dict[str, Any]) -> PodExit | None:
    """How a pod ended, from its status; None while it has not ended."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FATAL_WAITING:
            detail = waiting.get("message") or waiting["reason"]
            return PodExit(
                succeeded=False,
                reason="PodCannotStart",
                message=f"{container['name']}: {waiting['reason']}: {detail}",
            )
    agent = _terminated(status.get("containerStatuses"), "agent") or {}
    report = _report(agent)
    if phase == "Succeeded":
        return PodExit(
            succeeded=True,
            reason="AgentSucceeded",
            message="",
            exit_code=0,
            commit=report.commit,
            usage=report.usage,
        )
    if phase == "Failed":
        if status.get("reason") == "DeadlineExceeded":
            return PodExit(
                succeeded=False,
                reason="DeadlineExceeded",
                message=status.get("message", "activeDeadlineSeconds passed"),
            )
        clone = _terminated(status.get("initContainerStatuses"), "clone")
        if clone and clone.get("exitCode", 0) != 0:
            tail = (clone.get("message") or "").strip()
            return PodExit(
                succeeded=False,
                reason="CloneFailed",
                exit_code=clone.get("exitCode"),
                message=f"cloning the repository failed:\n{tail}",
            )
        code, why = agent.get("exitCode"), agent.get("reason") or status.get("reason") or "Error"
        if why == "OOMKilled":
            reason = "OOMKilled"
        elif code == NO_COMMITS:
            reason = "NoCommits"
        elif report.over_budget:
            reason = "BudgetExceeded"
        elif report.limit:
            reason = "RateLimited"
        else:
            reason = "AgentFailed"
        limit = report.limit
        return PodExit(
            succeeded=False,
            reason=reason,
            exit_code=code,
            message=f"agent exited with code {code} ({why}); last output:\n{report.tail.strip()}",
            commit=report.commit,
            usage=report.usage,
            over_budget=report.over_budget,
            rate_limited=None
            if limit is None
            else RateLimit(
                provider=limit.provider, until=datetime.fromtimestamp(limit.until, UTC), status=limit.status
            ),
        )
    return None


class PodActivities(contract.PodActivities):
    """Pods of kubernetes-mode polecats, on the cluster the worker is configured for."""

    def __init__(
        self, connection: KubeConnection, default_image: str, prices: Prices | None = None, hold: float = HOLD
    ) -> None:
        self.connection = connection
        self.default_image = default_image
        self.prices = prices or Prices()
        self.hold = hold  # the longest the pod's gateway holds a request through a limit

    @activity.defn(name=contract.START_POD)
    async def start_pod(self, launch: PodLaunch) -> PodRef:
        manifest = build_pod(
            launch.polecat,
            self.default_image,
            launch.bead,
            launch.attempt,
            os.environ,
            resume=launch.resume,
            follow_up=launch.follow_up,
            spent=launch.spent,
            prices=self.prices,
            hold=self.hold,
        )
        meta = manifest["metadata"]
        ref = PodRef(name=meta["name"], namespace=meta["namespace"], uid_label=meta["labels"][LABEL_UID])
        async with self.connection.api() as api:
            core = client.CoreV1Api(api)
            try:
                await core.create_namespaced_pod(ref.namespace, cast(Any, manifest))
                spec = launch.polecat.spec
                started_counter().add(1, {"rig": spec.rig, "agent": spec.agent, "mode": "kubernetes"})
            except ApiException as error:
                if error.status != 409:
                    raise _api_failure(error, "PodCreateFailed") from None
                existing = await core.read_namespaced_pod(ref.name, ref.namespace)
                labels = (existing.metadata.labels if existing.metadata else None) or {}
                if labels.get(LABEL_UID) != ref.uid_label:
                    raise ApplicationError(
                        f"pod {ref.name} exists and belongs to another polecat",
                        type="PodConflict",
                        non_retryable=True,
                    ) from None
        return ref

    @activity.defn(name=contract.WATCH_POD)
    async def watch_pod(self, ref: PodRef) -> PodExit:
        """Each heartbeat carries the agent's spend so far, as its entrypoint last wrote it into the
        pod's log (read every USAGE_READ_SECONDS; `gastown get` reads it from the pending activity)."""
        async with self.connection.api() as api:
            core = client.CoreV1Api(api)
            usage: Usage | None = None
            read_at = 0.0

            def beat() -> None:
                activity.heartbeat(*([usage.to_wire()] if usage else []))

            while True:
                beat()
                try:
                    pod = api.sanitize_for_serialization(
                        await core.read_namespaced_pod(ref.name, ref.namespace)
                    )
                except ApiException as error:
                    if error.status == 404:
                        raise ApplicationError(
                            f"pod {ref.name} was deleted", type="PodLost", non_retryable=True
                        ) from None
                    raise
                outcome = pod_outcome(pod)
                if outcome is not None:
                    return outcome
                if time.monotonic() - read_at >= USAGE_READ_SECONDS:
                    read_at = time.monotonic()
                    usage = await _usage_so_far(core, ref) or usage
                stream = watch.Watch().stream(
                    core.list_namespaced_pod,
                    ref.namespace,
                    label_selector=f"{LABEL_UID}={ref.uid_label}",
                    field_selector=f"metadata.name={ref.name}",  # not the pod of an earlier attempt
                    resource_version=pod["metadata"].get("resourceVersion"),
                    timeout_seconds=WATCH_SLICE_SECONDS,
                )
                async for event in stream:
                    beat()
                    changed = event.get("raw_object") or {}
                    if event.get("type") == "DELETED":
                        raise ApplicationError(
                            f"pod {ref.name} was deleted", type="PodLost", non_retryable=True
                        )
                    outcome = pod_outcome(changed)
                    if outcome is not None:
                        return outcome

    @activity.defn(name=contract.DELETE_POD)
    async def delete_pod(self, ref: PodRef) -> Usage | None:
        async with self.connection.api() as api:
            core = client.CoreV1Api(api)
            spent = await _usage_so_far(core, ref)  # the pod's ledger goes with it
            try:
                await core.delete_namespaced_pod(ref.name, ref.namespace, grace_period_seconds=0)
            except ApiException as error:
                if error.status != 404:
                    raise
        return spent


async def _usage_so_far(core: client.CoreV1Api, ref: PodRef) -> Usage | None:
    """The running total in the agent container's log (None: none yet, or no log to read)."""
    try:
        log = await core.read_namespaced_pod_log(
            ref.name, ref.namespace, container="agent", tail_lines=USAGE_LOG_LINES
        )
    except ApiException:
        return None
    return usage_in_log(log if isinstance(log, str) else "")


def _api_failure(error: ApiException, kind: str) -> ApplicationError:
    """An API error as a readable failure; 4xx other than conflicts will not heal by retrying."""
    retryable = error.status in (None, 409, 429) or (error.status or 0) >= 500
    return ApplicationError(
        f"{error.status} {error.reason}: {(error.body or '')[:500]}", type=kind, non_retryable=not retryable
    )
