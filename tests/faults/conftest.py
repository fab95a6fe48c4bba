"""The town the fault suite kills: a Temporal dev server on a database file, two workers and
two `gastown bridge`s (one active, one standing by), each a process of its own, over a git rig
and the fake Kubernetes API server.

`Supervised` does for each process what a supervisor (Kubernetes, systemd)
does: it starts the process, and starts it again when it has exited on its
own, counting that. The suite kills it with SIGKILL, its process group and
all, as a crashed machine would.

Everything is real but the Kubernetes API server (tests/fake_apiserver.py
speaks its HTTP protocol; no real one can run here): kubectl, the bridge
(kopf), Temporal's dev server, the worker, tmux and git.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtmux
import pytest
import yaml
from git import Repo

from client.settings import Settings
from crds import KINDS
from tests.fake_apiserver import FakeApiServer
from tests.helpers import GASTOWN, WORKER_COMMAND, GitRig, free_port, make_git_rig, wait_until, worker_env
from tests.processes import Supervised
from worker.embedded import dev_server_args, wait_for_server


@dataclass
class Town:
    temporal: Supervised
    workers: list[Supervised]  # on one host: both poll the shared queue and the host's
    bridges: list[Supervised]  # peering: the older one acts
    api: FakeApiServer
    kubeconfig: Path
    rig: GitRig
    work: Path  # what the agents and the check leave behind
    base: str  # main before the town started work
    address: str  # Temporal's

    @property
    def worker(self) -> Supervised:
        return self.workers[0]

    @property
    def bridge(self) -> Supervised:
        return self.bridges[0]

    @property
    def processes(self) -> list[Supervised]:
        return [self.temporal, *self.workers, *self.bridges]

    async def start(self, *processes: Supervised) -> None:
        """Start `processes` in that order (all, Temporal first, by default); wait until the bridge watches."""
        for process in processes or self.processes:
            process.start()
            if process is self.temporal:
                await wait_for_server(Settings(TEMPORAL_ADDRESS=self.address))
        await wait_until(self.api.watching_every_kind, "the bridge to watch every kind")

    def status(self, plural: str, name: str, namespace: str | None = "default") -> dict[str, Any]:
        """The status on the API server, as `kubectl get` would show it."""
        for found in self.api.objects(plural, namespace):
            if found["metadata"]["name"] == name:
                return dict(found.get("status") or {})
        return {}


@pytest.fixture
async def town(tmp_path: Path) -> AsyncIterator[Town]:
    """A town not yet started: its rig (main holds pkg/), the fake API server, and its processes."""
    rig = make_git_rig(tmp_path / "rig")
    Repo(rig.remote).git.config("core.logAllRefUpdates", "always")  # every commit main was ever on
    base = rig.push_branch("main", {"pkg/__init__.py": ""}, author="town")
    api = FakeApiServer()
    await api.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(api.kubeconfig()))
    port = free_port()
    address = f"127.0.0.1:{port}"
    socket = f"gastown-faults-{os.getpid()}-{tmp_path.name}"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**worker_env(address, "gastown", tmp_path / "home", socket), "KUBECONFIG": str(kubeconfig)}
    temporal_argv = dev_server_args(port, None, tmp_path / "temporal.db", "default")
    town = Town(
        temporal=Supervised("temporal", temporal_argv, dict(os.environ), logs / "temporal.log"),
        workers=[Supervised(f"worker-{n}", WORKER_COMMAND, env, logs / f"worker-{n}.log") for n in (1, 2)],
        bridges=[
            Supervised(f"bridge-{n}", [GASTOWN, "bridge"], env, logs / f"bridge-{n}.log") for n in (1, 2)
        ],
        api=api,
        kubeconfig=kubeconfig,
        rig=rig,
        work=tmp_path / "work",
        base=base,
        address=address,
    )
    for name in ("runs", "locks"):
        (town.work / name).mkdir(parents=True)
    try:
        yield town
    finally:
        for process in town.processes:
            process.stop()
        with (logs / "objects.jsonl").open("w") as objects:  # for reading a run afterwards
            for plural in ("events", *(kind.INFO.plural for kind in KINDS.values())):
                objects.writelines(json.dumps(found) + "\n" for found in api.objects(plural))
        tmux = libtmux.Server(socket_name=socket)
        if tmux.is_alive():
            tmux.kill()
        await api.stop()
