"""A test kubelet: the fake API server's Pods run as real Docker containers.

No kubelet can run here (there is no real API server for one to join), so this
one stands in for it, for tests only. It watches the fake's Pods (in process)
and runs each new one as a kubelet with Docker would: its init containers one
after the other, then its container, each a `docker run` of the pod's image
with what the spec says: command and args, env (values, and `secretKeyRef`s
from the fake's Secrets), working directory, emptyDir and secret volumes
(modes, and the fsGroup's group), the security context (user and group,
read-only root, dropped capabilities, no new privileges), memory and CPU
limits, the termination message file, and the host's network (our dockerd has
no bridge). It writes the pod's status back as a kubelet reports it: the
phase, `initContainerStatuses` and `containerStatuses` with exit codes and
reasons (OOMKilled from the kernel), the termination message (or the log's
tail, for FallbackToLogsOnError), ErrImagePull then ImagePullBackOff for an
image it does not have (it never pulls: nothing can be pulled here), and
DeadlineExceeded past `activeDeadlineSeconds`. The container's output is the
pod's log the fake serves. A deleted pod's containers are stopped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from tests.fake_apiserver import FakeApiServer

POLL_SECONDS = 0.2
MESSAGE_LIMIT = 4096  # the kubelet's cap on a termination message
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048  # FallbackToLogsOnError: the log's tail, whichever is less


def require_image(image: str) -> None:
    """Fail, saying what to run, unless a Docker engine answers and has `image` (`make images`)."""
    assert shutil.which("docker"), "no docker client: apt-get install docker.io"
    answers = subprocess.run(["docker", "info"], capture_output=True)
    assert answers.returncode == 0, "no Docker engine answers: `make images` starts one"
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    assert found.returncode == 0, f"{image} is not built: run `make images`"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ContainerCannotStart(Exception):
    """A container the kubelet cannot create: it waits with this reason, as a kubelet reports."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


class DockerKubelet:
    """Runs the fake's Pods in Docker while in use (`async with DockerKubelet(api, root):`)."""

    def __init__(self, api: FakeApiServer, root: Path) -> None:
        self.api = api
        self.root = root  # each pod's volumes and termination messages, under <namespace>/<pod>
        self.node = f"kubelet-{uuid.uuid4().hex[:8]}"  # labels this kubelet's containers
        self._pods: dict[str, asyncio.Task[None]] = {}  # by pod uid

    async def __aenter__(self) -> DockerKubelet:
        self._loop = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._loop.cancel()
        for task in self._pods.values():
            task.cancel()
        await asyncio.gather(self._loop, *self._pods.values(), return_exceptions=True)
        await _docker("rm", "--force", "--volumes", *await self._containers())

    async def _containers(self) -> list[str]:
        _, out = await _docker("ps", "--all", "--quiet", "--filter", f"label=gastown.test/node={self.node}")
        return out.split()

    async def _watch(self) -> None:
        while True:
            pods = {p["metadata"]["uid"]: p for p in self.api.objects("pods")}
            for uid, pod in pods.items():
                if uid not in self._pods and not pod["metadata"].get("deletionTimestamp"):
                    self._pods[uid] = asyncio.create_task(self._run(pod))
            for uid, task in self._pods.items():
                gone = uid not in pods or pods[uid]["metadata"].get("deletionTimestamp")
                if gone and not task.done():
                    task.cancel()  # the container is stopped as the task ends
            await asyncio.sleep(POLL_SECONDS)

    def _patch(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if any(p["metadata"]["uid"] == meta["uid"] for p in self.api.objects("pods", meta["namespace"])):
            self.api.patch_status("pods", meta["namespace"], meta["name"], status)

    async def _run(self, pod: dict[str, Any]) -> None:
        spec = pod["spec"]
        inits, mains = spec.get("initContainers", []), spec["containers"]
        init_statuses = [_status(c, {"waiting": {"reason": "PodInitializing"}}) for c in inits]
        statuses = [
            _status(c, {"waiting": {"reason": "PodInitializing" if inits else "ContainerCreating"}})
            for c in mains
        ]
        self._patch(pod, {"phase": "Pending", "startTime": _now(), "initContainerStatuses": init_statuses,
                          "containerStatuses": statuses})  # fmt: skip
        try:
            async with asyncio.timeout(spec.get("activeDeadlineSeconds")):
                volumes = self._volumes(pod)
                for index, container in enumerate(inits):
                    init_statuses[index] = await self._container(
                        pod, container, volumes, init_statuses, index, "init"
                    )
                    if init_statuses[index]["state"]["terminated"]["exitCode"] != 0:
                        self._patch(pod, {"phase": "Failed", "initContainerStatuses": init_statuses})
                        return
                for index, container in enumerate(mains):  # one container is all our pods have
                    statuses[index] = await self._container(pod, container, volumes, statuses, index, "main")
        except TimeoutError:
            self._patch(pod, {"phase": "Failed", "reason": "DeadlineExceeded",
                              "message": "Pod was active on the node longer than the specified deadline"})  # fmt: skip
            return
        except ContainerCannotStart:
            return  # it waits, as the status says, until the pod is deleted
        codes = [s["state"]["terminated"]["exitCode"] for s in statuses]
        self._patch(
            pod, {"phase": "Succeeded" if not any(codes) else "Failed", "containerStatuses": statuses}
        )

    async def _container(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        volumes: dict[str, tuple[Path, bool]],
        statuses: list[dict[str, Any]],
        index: int,
        kind: str,
    ) -> dict[str, Any]:
        """Run one container to its end; its terminated status."""
        field = "initContainerStatuses" if kind == "init" else "containerStatuses"
        meta = pod["metadata"]
        name = f"{self.node}-{meta['uid'][:8]}-{container['name']}"
        message_file = self.root / meta["namespace"] / meta["name"] / f"{container['name']}.termination"
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.write_text("")
        message_file.chmod(0o666)
        try:
            argv, env = await self._docker_run(pod, container, volumes, name, message_file)
        except ContainerCannotStart as error:
            statuses[index] = _status(
                container, {"waiting": {"reason": error.reason, "message": error.message}}
            )
            self._patch(pod, {field: statuses})
            await asyncio.Event().wait()  # a kubelet retries forever; nothing here resolves it
            raise
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        started = _now()
        statuses[index] = _status(container, {"running": {"startedAt": started}}, started=True)
        self._patch(pod, {"phase": "Running" if kind == "main" else "Pending", field: statuses})
        lines: list[str] = []
        log = self.api.pod_logs.setdefault((meta["namespace"], meta["name"]), [])
        try:
            assert process.stdout is not None
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if kind == "main":
                    log.append((datetime.now(UTC), line))
            await process.wait()
        except asyncio.CancelledError:  # the pod was deleted, or its deadline passed
            await _docker("stop", "--time", str(pod["spec"].get("terminationGracePeriodSeconds", 30)), name)
            raise
        _, inspected = await _docker("inspect", name)
        found = json.loads(inspected)[0]
        state = found["State"]
        await _docker("rm", name)
        code = int(state["ExitCode"])
        reason = "OOMKilled" if state.get("OOMKilled") else "Completed" if code == 0 else "Error"
        message = message_file.read_text()[:MESSAGE_LIMIT]
        if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "\n".join(lines[-FALLBACK_LINES:])[-FALLBACK_BYTES:]
        terminated = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": _now(),
                      "containerID": f"docker://{found['Id']}"}  # fmt: skip
        if message:
            terminated["message"] = message
        statuses[index] = _status(container, {"terminated": terminated}, started=False)
        self._patch(pod, {field: statuses})
        return statuses[index]

    async def _docker_run(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        volumes: dict[str, tuple[Path, bool]],
        name: str,
        message_file: Path,
    ) -> tuple[list[str], dict[str, str]]:
        """The `docker run` of a container, and the environment it takes the container's env from
        (`-e NAME` reads the value there: no value on a command line, newlines kept)."""
        image = container["image"]
        code, _ = await _docker("image", "inspect", image)
        if code != 0:
            _, said = await _docker("pull", image)  # fails here, in the engine's own words
            pulling = {"reason": "ErrImagePull", "message": said.strip()}
            self._patch(pod, {"containerStatuses": [_status(container, {"waiting": pulling})]})
            await asyncio.sleep(1)  # then it backs off, as a kubelet does
            raise ContainerCannotStart("ImagePullBackOff", f'Back-off pulling image "{image}"')
        argv = [
            "docker",
            "run",
            "--name",
            name,
            "--network",
            "host",
            "--label",
            f"gastown.test/node={self.node}",
        ]
        security = {**pod["spec"].get("securityContext", {}), **container.get("securityContext", {})}
        user, group = security.get("runAsUser"), security.get("runAsGroup")
        if security.get("runAsNonRoot") and user == 0:
            raise ContainerCannotStart(
                "CreateContainerConfigError", "container's runAsUser breaks non-root policy"
            )
        if user is not None:
            argv += ["--user", f"{user}:{group if group is not None else user}"]
        for extra in [security.get("fsGroup"), *security.get("supplementalGroups", [])]:
            if extra is not None:
                argv += ["--group-add", str(extra)]
        if security.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        for capability in security.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop", capability]
        for capability in security.get("capabilities", {}).get("add", []):
            argv += ["--cap-add", capability]
        if security.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        if security.get("seccompProfile", {}).get("type") == "Unconfined":
            argv += ["--security-opt", "seccomp=unconfined"]
        limits = container.get("resources", {}).get("limits", {})
        if "memory" in limits:  # no swap: over the limit the kernel kills, as on a node
            memory = str(int(_quantity(limits["memory"])))
            argv += ["--memory", memory, "--memory-swap", memory]
        if "cpu" in limits:
            argv += ["--cpus", str(_quantity(limits["cpu"]))]
        for mount in container.get("volumeMounts", []):
            host, read_only = volumes[mount["name"]]
            argv += [
                "--volume",
                f"{host}:{mount['mountPath']}{':ro' if read_only or mount.get('readOnly') else ''}",
            ]
        argv += [
            "--volume",
            f"{message_file}:{container.get('terminationMessagePath', '/dev/termination-log')}",
        ]
        if "workingDir" in container:
            argv += ["--workdir", container["workingDir"]]
        env = {"PATH": os.environ["PATH"], "DOCKER_HOST": os.environ.get("DOCKER_HOST", "")}
        for item in container.get("env", []):
            argv += ["--env", item["name"]]
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            env[item["name"]] = self._secret_value(pod, ref) if ref else item.get("value", "")
        command, args = container.get("command"), container.get("args", [])
        if command:
            argv += ["--entrypoint", command[0], image, *command[1:], *args]
        else:
            argv += [image, *args]
        return argv, env

    def _secret(self, pod: dict[str, Any], name: str) -> dict[str, bytes]:
        namespace = pod["metadata"]["namespace"]
        for secret in self.api.objects("secrets", namespace):
            if secret["metadata"]["name"] == name:
                data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
                return data | {k: v.encode() for k, v in (secret.get("stringData") or {}).items()}
        raise ContainerCannotStart("CreateContainerConfigError", f'secret "{name}" not found')

    def _secret_value(self, pod: dict[str, Any], ref: dict[str, Any]) -> str:
        data = self._secret(pod, ref["name"])
        if ref["key"] not in data:
            raise ContainerCannotStart(
                "CreateContainerConfigError", f"couldn't find key {ref['key']} in Secret {ref['name']}"
            )
        return data[ref["key"]].decode()

    def _volumes(self, pod: dict[str, Any]) -> dict[str, tuple[Path, bool]]:
        """Each volume as a host directory (and whether it is read-only), made as a kubelet makes it:
        an emptyDir open to all (0777), a secret's keys as files of its mode; with an fsGroup, owned
        by that group, a secret's files readable by it."""
        meta = pod["metadata"]
        group = pod["spec"].get("securityContext", {}).get("fsGroup")
        made: dict[str, tuple[Path, bool]] = {}
        for volume in pod["spec"].get("volumes", []):
            path = self.root / meta["namespace"] / meta["name"] / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                path.chmod(0o777)
                if group is not None:
                    os.chown(path, 0, group)
                made[volume["name"]] = (path, False)
            elif "secret" in volume:
                source = volume["secret"]
                mode = source.get("defaultMode", 0o644)
                if group is not None:
                    mode |= (mode & 0o700) >> 3
                for key, value in self._secret(pod, source["secretName"]).items():
                    file = path / key
                    file.write_bytes(value)
                    file.chmod(mode)
                    if group is not None:
                        os.chown(file, 0, group)
                path.chmod(0o755)
                made[volume["name"]] = (path, True)
            else:
                raise NotImplementedError(f"the test kubelet has no {sorted(volume)} volumes")
        return made


def _quantity(text: str) -> float:
    return float(parse_quantity(text))  # type: ignore[no-untyped-call]


def _status(container: dict[str, Any], state: dict[str, Any], started: bool = False) -> dict[str, Any]:
    """A container status as a kubelet reports it (every field it always sets)."""
    return {"name": container["name"], "image": container["image"], "imageID": "", "ready": started,
            "restartCount": 0, "started": started, "state": state}  # fmt: skip


async def _docker(*args: str) -> tuple[int, str]:
    """A docker command's exit code and output (stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")
