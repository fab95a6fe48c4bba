"""Helpers shared by the tests: waiting with a deadline, manifests, git rigs."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shlex
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import yaml
from git import Actor, Blob, Repo
from temporalio.client import Client
from temporalio.service import RPCError

from bridge.reconcile import Reconciler
from crds import Polecat, Refinery, Resource, Rig, parse_resource
from worker.ports import free_port as free_port  # the tests take their ports from here

T = TypeVar("T")
R = TypeVar("R", bound=Resource)
REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTED_AGENT = REPO_ROOT / "examples" / "agents" / "scripted_agent.py"
# Binaries installed by the locked wheels beside our Python, never from PATH.
GASTOWN = str(Path(sysconfig.get_path("scripts")) / "gastown")
KUBECTL = str(Path(sysconfig.get_path("scripts")) / "kubectl")


async def terminate_running(client: Client, task_queue: str) -> None:
    """End a test's workflows (and their Schedules): one left with no worker behind it answers no later test."""
    query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query):
        with contextlib.suppress(RPCError):  # it may have ended since the listing
            await client.get_workflow_handle(execution.id, run_id=execution.run_id).terminate("test finished")
        if execution.workflow_type in ("BeadStore", "Witness"):
            with contextlib.suppress(RPCError):
                await client.get_schedule_handle(execution.id).delete()


@overload
async def wait_until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30.0) -> T: ...
@overload
async def wait_until(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T: ...
async def wait_until(probe: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """The first truthy value of `probe` (sync or async), or fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """The real kubectl against `kubeconfig`: its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate(stdin.encode() if stdin else None)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def kubectl_apply(kubeconfig: Path, *documents: dict[str, Any]) -> str:
    """`kubectl apply` of `documents`, which must succeed; what kubectl said."""
    code, out, err = await kubectl(
        kubeconfig, "apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(documents)
    )
    assert code == 0, err
    return out


async def kubectl_get(kubeconfig: Path, plural: str, name: str) -> dict[str, Any] | None:
    """The object as `kubectl get -o json` shows it, or None if there is none."""
    code, out, _ = await kubectl(kubeconfig, "get", plural, name, "-o", "json")
    return json.loads(out) if code == 0 else None


@dataclass
class GitRig:
    """A rig's checkout with a bare remote, as a user's project would be."""

    checkout: Path
    remote: Path

    def remote_branches(self) -> dict[str, str]:
        """branch -> sha on the remote."""
        repo = Repo(self.remote)
        return {head.name: head.commit.hexsha for head in repo.heads}

    def files_on(self, branch: str) -> dict[str, str]:
        repo = Repo(self.remote)
        tree = repo.commit(branch).tree
        return {
            str(item.path): item.data_stream.read().decode()
            for item in tree.traverse()
            if isinstance(item, Blob)
        }

    def push_branch(self, branch: str, files: dict[str, str], author: str = "nux", base: str = "main") -> str:
        """A branch from `base` with one commit writing `files`, pushed to the remote; its sha."""
        repo = Repo(self.checkout)
        repo.git.fetch("origin")
        repo.git.checkout("-q", "-B", branch, f"origin/{base}")
        for path, text in files.items():
            (self.checkout / path).parent.mkdir(parents=True, exist_ok=True)
            (self.checkout / path).write_text(text)
        repo.index.add(list(files))
        who = Actor(author, f"{author}@example.com")
        commit = repo.index.commit(f"{author}: write {', '.join(files)}", author=who, committer=who)
        repo.git.push("-q", "-f", "origin", f"{branch}:refs/heads/{branch}")
        repo.git.checkout("-q", "--detach")
        return commit.hexsha

    def log(self, branch: str = "main") -> list[str]:
        """Subjects of the commits on the remote's branch, newest first (first parents only)."""
        return str(Repo(self.remote).git.log("--first-parent", "--format=%s", branch)).splitlines()


def make_git_rig(root: Path, with_remote: bool = True) -> GitRig:
    """A bare remote and a clone of it with one commit on main."""
    remote = root / "remote.git"
    checkout = root / "checkout"
    author = Actor("Test", "test@example.com")
    if with_remote:
        Repo.init(remote, bare=True, initial_branch="main")
        repo = Repo.clone_from(remote, checkout)
    else:
        repo = Repo.init(checkout, initial_branch="main")
    (checkout / "README.md").write_text("# sample rig\n")
    repo.index.add(["README.md"])
    repo.index.commit("initial commit", author=author, committer=author)
    if repo.active_branch.name != "main":
        repo.git.branch("-M", "main")
    if with_remote:
        repo.git.push("origin", "main")
    return GitRig(checkout=checkout, remote=remote)


def rig_manifest(name: str, rig: GitRig, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Rig",
        "metadata": {"name": name},
        "spec": {"localPath": str(rig.checkout), "gitURL": str(rig.remote), **spec},
    }


def polecat_manifest(name: str, rig: str, *agent_args: str, **spec: Any) -> dict[str, Any]:
    """A Working polecat running the scripted agent with `agent_args`."""
    body: dict[str, Any] = {
        "rig": rig,
        "desiredState": "Working",
        "beadID": "gt-test1",
        "agent": "custom",
        "agentConfig": {"command": [sys.executable, str(SCRIPTED_AGENT), *agent_args]},
    }
    body.update(spec)
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


def parsed(model: type[R], manifest: dict[str, Any]) -> R:
    """A test's own manifest as its kind (another kind is a bug in the test)."""
    resource = parse_resource(manifest)
    assert isinstance(resource, model)
    return resource


def rig(manifest: dict[str, Any]) -> Rig:
    return parsed(Rig, manifest)


def polecat(manifest: dict[str, Any]) -> Polecat:
    return parsed(Polecat, manifest)


def beadstore_manifest(name: str, rig: str, path: str, kind: str = "jsonl", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "BeadStore",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"rigRef": rig, "source": {"type": kind, "path": path}, **spec},
    }


def convoy_manifest(name: str, rig: str, beads: list[str], *agent_args: str, **spec: Any) -> dict[str, Any]:
    """An autoSpawn convoy whose polecats run the scripted agent with `agent_args`."""
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Convoy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "rigRef": rig,
            "trackedBeads": beads,
            "autoSpawn": True,
            "polecatTemplate": {
                "agent": "custom",
                "agentConfig": {"command": [sys.executable, str(SCRIPTED_AGENT), *agent_args]},
            },
            **spec,
        },
    }


def refinery_manifest(name: str, rig: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Refinery",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"rigRef": rig, **spec},
    }


def witness_manifest(rig: str, name: str = "witness", **spec: Any) -> dict[str, Any]:
    """A Witness quick enough for a test: checks every second, stuck after 3 s, no startup grace."""
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Witness",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"rigRef": rig, "checkInterval": "1s", "stuckThreshold": "3s", "startupGrace": "0s", **spec},
    }


def refinery(rig: str, **spec: Any) -> Refinery:
    """The Refinery `default/refinery` of `rig`."""
    return parsed(Refinery, refinery_manifest("refinery", rig, **spec))


def python_check(code: str) -> str:
    """A requiredChecks entry running `code` with this Python (words split, no shell)."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def write_beads(path: Path, beads: list[dict[str, Any]]) -> None:
    """A beads `issues.jsonl` export, written whole (as `bd export` does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(
        json.dumps({"status": "open", "title": f"work on {bead['id']}", **bead}) + "\n" for bead in beads
    )
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def max_concurrent(spans: Path) -> int:
    """The most agents that ran at once, from the scripted agent's `--spans` file."""
    edges = []
    for line in spans.read_text().splitlines():
        edge, _, moment = line.split()
        edges.append((float(moment), 1 if edge == "start" else -1))
    running = peak = 0
    for _, step in sorted(edges, key=lambda item: (item[0], item[1])):  # an end before a start at a tie
        running += step
        peak = max(peak, running)
    return peak


WORKER_COMMAND = [sys.executable, "-m", "cli.commands", "worker"]


def worker_env(
    temporal_address: str, task_queue: str, home: Path, tmux_socket: str, http_address: str | None = None
) -> dict[str, str]:
    """The environment of a `gastown` process (worker or CLI) serving one test; with `http_address`,
    its read commands read through Temporal's HTTP API there."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_address,
        "GASTOWN_TASK_QUEUE": task_queue,
        "GASTOWN_HOME": str(home),
        "GASTOWN_TMUX_SOCKET": tmux_socket,
        **({"TEMPORAL_HTTP_ADDRESS": http_address} if http_address else {}),
    }


async def reach(
    reconciler: Reconciler,
    model: type[R],
    name: str,
    *phases: str,
    timeout: float = 30.0,
    namespace: str = "default",
) -> R:
    """The resource once its phase is one of `phases`; on timeout, says where it was."""
    seen: list[str] = []

    async def probe() -> R | None:
        found = await reconciler.find(model, namespace, name)
        status = getattr(found, "status", None)
        if found is not None and status is not None:
            seen[:] = [f"{status.phase}: {getattr(status, 'message', '')}"]
            if status.phase in phases:
                return found
        return None

    try:
        return await wait_until(probe, f"{model.INFO.kind} {name} to reach {phases}", timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen {seen}") from None
