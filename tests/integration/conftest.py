"""Fixtures of the integration tests: beads sources built from the real exports (a legacy SQLite
database and a running daemon), a Slack-style webhook, and a cluster (the fake API server, a
worker that reaches it, and `gastown bridge`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from temporalio.client import Client

from client.settings import Settings
from tests.fake_apiserver import FakeApiServer
from tests.helpers import (
    GASTOWN,
    REPO_ROOT,
    GitRig,
    free_port,
    kubectl,
    kubectl_apply,
    kubectl_get,
    make_git_rig,
    terminate_running,
    wait_until,
)
from worker.main import build_worker

DATA = REPO_ROOT / "tests" / "data" / "beads"  # real exports, MIT (see its README)
GASTOWN_EXPORT = DATA / "gastown-issues.jsonl"
BEADS = DATA / "beads-issues.jsonl"


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def beads_db(tmp_path: Path) -> Path:
    """A legacy beads database (the field notes' tables), filled from the real export."""
    path = tmp_path / "beads.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT, description TEXT, status TEXT, priority INTEGER,
            issue_type TEXT, assignee TEXT, created_at TEXT, updated_at TEXT, closed_at TEXT, close_reason TEXT,
            metadata TEXT);
        CREATE TABLE labels (issue_id TEXT, label TEXT);
        CREATE TABLE dependencies (issue_id TEXT, depends_on_id TEXT, type TEXT, created_at TEXT, created_by TEXT);
        CREATE TABLE config (key TEXT, value TEXT);
        """
    )
    columns = (
        "id",
        "title",
        "description",
        "status",
        "priority",
        "issue_type",
        "assignee",
        "created_at",
        "updated_at",
        "closed_at",
        "close_reason",
    )
    for record in records(BEADS):
        db.execute(
            f"INSERT INTO issues ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [record.get(c) for c in columns],
        )
        for label in record.get("labels") or []:  # type: ignore[attr-defined]
            db.execute("INSERT INTO labels VALUES (?, ?)", (record["id"], label))
    db.execute("INSERT INTO config VALUES ('issue_prefix', 'bd')")
    db.commit()
    db.close()
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, object]]]]:
    """A small beads daemon on a Unix socket: newline-delimited JSON, one request and one response a line."""
    path = tmp_path / "bd.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    data = records(BEADS)
    seen: list[dict[str, object]] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                line = stream.readline()
                if not line:  # a client that connected and left (a read cut short): nothing to answer
                    continue
                request = json.loads(line)
                seen.append(request)
                wanted = set(request["args"].get("labels") or [])
                items = [r for r in data if wanted <= set(r.get("labels") or [])]  # type: ignore[call-overload]
                stream.write(json.dumps({"success": True, "data": items}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, seen
    server.close()


# A webhook URL's path is its credential: tests look for this text where it must never be.
SECRET_PATH = "/services/T0001/B0001/very-secret-token"


@dataclass
class Webhook:
    """A local Slack-style incoming webhook: records each message; answers as scripted, then 200."""

    answers: list[int | str] = field(default_factory=list)  # a status, or "hang" (never answers in time)
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        answer = self.answers.pop(0) if self.answers else 200
        if answer == "hang":
            await asyncio.sleep(30)
            answer = 504  # the sender gave up long ago
        if request.path != SECRET_PATH:
            return web.Response(status=404, text="no_service")
        if answer != 200:
            return web.Response(status=int(answer), text="try later")
        self.received.append(await request.json())
        return web.Response(text="ok")

    def texts(self) -> list[str]:
        return [message["text"] for message in self.received]


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    """A Slack-style incoming webhook on a local port, at a secret path."""
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)  # a hung answer ends at once
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    hook.url = f"http://127.0.0.1:{port}{SECRET_PATH}"
    yield hook
    await runner.cleanup()


@dataclass
class Cluster:
    api: FakeApiServer
    kubeconfig: Path
    settings: Settings
    bridge: asyncio.subprocess.Process | None = None

    async def kubectl(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        return await kubectl(self.kubeconfig, *args, stdin=stdin)

    async def apply(self, *documents: dict[str, Any]) -> str:
        return await kubectl_apply(self.kubeconfig, *documents)

    async def get(self, plural: str, name: str) -> dict[str, Any] | None:
        return await kubectl_get(self.kubeconfig, plural, name)

    def peers(self) -> int:
        """The bridges alive in the peering object (the active one and those standing by)."""
        return sum(len(found.get("status") or {}) for found in self.api.objects("clusterkopfpeerings"))

    async def start_bridge(self, standby: bool = False) -> asyncio.subprocess.Process:
        """`gastown bridge`, once it watches every kind (a `standby`: once it is in the peering)."""
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "TEMPORAL_ADDRESS": self.settings.temporal_address,
            "GASTOWN_TASK_QUEUE": self.settings.task_queue,
            "PYTHONUNBUFFERED": "1",  # a killed bridge's last lines are in its log, not lost in a buffer
        }
        before, peers = dict(self.api.watches_started), self.peers()
        with self.bridge_log.open("ab") as log:  # every run of every bridge
            bridge = await asyncio.create_subprocess_exec(
                GASTOWN, "bridge", env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        if standby:
            await wait_until(lambda: self.peers() > peers, "the bridge to join the peering")
        else:
            await wait_until(lambda: self.api.watching_every_kind(before), "the bridge to watch every kind")
        return bridge

    @property
    def bridge_log(self) -> Path:
        """What the bridge wrote (kopf's log and ours, at INFO)."""
        return self.kubeconfig.with_name("bridge.log")

    async def stop_bridge(self) -> None:
        bridge = self.bridge
        if bridge is not None and bridge.returncode is None:
            bridge.terminate()
            try:
                await asyncio.wait_for(bridge.wait(), 30)
            except TimeoutError:
                bridge.kill()
                await bridge.wait()

    async def phase(self, name: str) -> str | None:
        found = await self.get("polecats", name)
        return found.get("status", {}).get("phase") if found else None


@pytest.fixture
async def cluster(client: Client, settings: Settings, tmp_path: Path) -> AsyncIterator[Cluster]:
    """The fake API server, a worker that can reach it, and `gastown bridge` watching it.

    The bridge runs in its own process, as in production: kopf owns its event loop.
    """
    api = FakeApiServer()
    await api.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(api.kubeconfig()))
    kube_settings = settings.model_copy(update={"kubeconfig": str(kubeconfig)})
    cluster = Cluster(api, kubeconfig, kube_settings)
    async with build_worker(client, kube_settings):
        cluster.bridge = await cluster.start_bridge()
        try:
            yield cluster
        finally:
            await cluster.stop_bridge()
            await terminate_running(client, settings.task_queue)
    await api.stop()


@pytest.fixture
def tmux_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every tmux command line this test's processes run, one per line in the returned file: `tmux`
    on PATH is a script that writes its arguments there, then runs the machine's tmux."""
    real = shutil.which("tmux")
    assert real, "tmux is installed by .ci/run"
    shims, log = tmp_path / "tmux-shim", tmp_path / "tmux-argv.log"
    shims.mkdir()
    shim = shims / "tmux"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    return log


@dataclass
class GitServer:
    rig: GitRig
    url: str


def accepts(port: int) -> bool:
    """Something listens on the loopback `port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
async def git_daemon(tmp_path: Path) -> AsyncIterator[GitServer]:
    """The rig's bare remote served over the git protocol (`git daemon`), pushes allowed."""
    rig = make_git_rig(tmp_path / "rig")
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
         f"--port={port}", f"--base-path={rig.remote.parent}", str(rig.remote.parent)],
    )  # fmt: skip
    await wait_until(lambda: accepts(port), "git daemon to listen")
    yield GitServer(rig, f"git://127.0.0.1:{port}/{rig.remote.name}")
    daemon.terminate()
    daemon.wait()
