"""What a local agent finds in its environment: the worker's that starts it, and nothing of another home.

Each test runs `gastown up` as a user does, with no GASTOWN_TMUX_SOCKET: every
home has a tmux server of its own. The agent is the scripted agent, which
writes the environment it was started with to a file. Its provider is the
test's model server, reached through its home's model gateway: the agent
holds a placeholder, and the key the provider sees is its home's.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import libtmux
import psutil
import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities.tmux import ENV_FILE, TmuxActivities
from client.settings import record_ports, tmux_socket_of
from contracts.tmux import AgentLaunch
from launch.gateway import PLACEHOLDER_KEY
from tests.helpers import free_port, make_git_rig, polecat, polecat_manifest, rig_manifest, wait_until
from tests.integration.test_embedded import run
from tests.model_server import ModelServer, serve

Runtime = Callable[..., dict[str, str]]


@pytest.fixture
async def runtime(tmp_path: Path, tmux_argv: Path) -> AsyncIterator[Runtime]:
    """Makes the environment of a `gastown` run for a home (its own ports, HOME and key); every
    home made is brought `down` afterwards and its tmux server killed."""
    made: list[dict[str, str]] = []

    def environment(home: str, **variables: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "GASTOWN_TMUX_SOCKET"}
        env |= {
            "GASTOWN_HOME": str(tmp_path / home),
            "HOME": str(tmp_path / f"{home}-user"),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "GASTOWN_UI_PORT": str(free_port()),
            "GASTOWN_HTTP_PORT": str(free_port()),
            "GASTOWN_TASK_QUEUE": "gastown",
        }
        env |= variables
        env = {key: value for key, value in env.items() if value}  # "" removes a variable
        made.append(env)
        return env

    yield environment
    for env in made:
        await run(env, "down")
        server = libtmux.Server(socket_name=tmux_socket_of(Path(env["GASTOWN_HOME"])))
        if server.is_alive():
            server.kill()


async def start_polecat(env: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    """Apply a rig and a polecat `name` whose agent stays up; the environment its agent started with."""
    home = Path(env["GASTOWN_HOME"])
    seen, gate = tmp_path / f"{name}.env.json", tmp_path / "never"
    rig = (
        make_git_rig(tmp_path / f"rig-{home.name}") if not (tmp_path / f"rig-{home.name}").exists() else None
    )
    documents: list[dict[str, Any]] = []
    if rig is not None:
        documents.append(rig_manifest("town", rig))
    documents.append(polecat_manifest(name, "town", "--environment", str(seen), "--wait-for", str(gate)))
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    applied = await run(env, "apply", "-f", str(manifest))
    assert applied.code == 0, applied.err

    def environment() -> dict[str, str] | None:
        try:
            return dict(json.loads(seen.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    return await wait_until(environment, f"{name}'s agent to start", timeout=60)


def sessions(env: dict[str, str]) -> set[str]:
    """The tmux sessions of a home's own tmux server."""
    server = libtmux.Server(socket_name=tmux_socket_of(Path(env["GASTOWN_HOME"])))
    return {session.name or "" for session in server.sessions} if server.is_alive() else set()


def on_a_command_line(text: str) -> list[str]:
    """Command lines of this machine's processes that contain `text`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if text in line:
            found.append(line)
    return found


@pytest.fixture
async def model() -> AsyncIterator[ModelServer]:
    async for server in serve(ModelServer([])):
        yield server


async def key_through(seen: dict[str, str], model: ModelServer) -> str:
    """The key the provider sees when the agent asks its base URL, as the agent would."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{seen['ANTHROPIC_BASE_URL']}/v1/messages",
            json={"model": "m", "messages": []},
            headers={"x-api-key": seen["ANTHROPIC_API_KEY"]},
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
    return model.headers[-1]["x-api-key"]


async def test_two_homes_at_once_each_give_their_agents_their_own_key(
    runtime: Runtime, tmp_path: Path, tmux_argv: Path, model: ModelServer
) -> None:
    """Two homes run side by side with different keys: each agent has its own home's key and HOME,
    each home's agents live in its own tmux server, and no key is on any command line. A second
    home never joins the first one's ports: it is refused when the ports were asked for, and moves
    to free ports (saying which) when they were only its defaults."""
    a = runtime("a", ANTHROPIC_API_KEY="sk-home-a-key", ANTHROPIC_BASE_URL=model.url)
    assert (await run(a, "up")).code == 0

    clash = runtime("b", ANTHROPIC_API_KEY="sk-home-b-key")
    clash |= {key: a[key] for key in ("TEMPORAL_ADDRESS", "GASTOWN_UI_PORT", "GASTOWN_HTTP_PORT")}
    refused = await run(clash, "up")
    assert refused.code == 2
    assert f"held by the Gas Town runtime of GASTOWN_HOME={a['GASTOWN_HOME']}" in refused.err, refused.err
    assert "will not join it" in refused.err

    b = runtime(
        "b",
        ANTHROPIC_API_KEY="sk-home-b-key",
        ANTHROPIC_BASE_URL=model.url,
        TEMPORAL_ADDRESS="",
        GASTOWN_UI_PORT="",
        GASTOWN_HTTP_PORT="",
    )
    ports = [int(a[key]) for key in ("GASTOWN_UI_PORT", "GASTOWN_HTTP_PORT")]
    record_ports(Path(b["GASTOWN_HOME"]), a["TEMPORAL_ADDRESS"], *ports)  # as if chosen before
    moved = await run(b, "up")
    assert moved.code == 0, moved.err
    assert f"held by the Gas Town runtime of GASTOWN_HOME={a['GASTOWN_HOME']}" in moved.out
    assert "uses Temporal 127.0.0.1:" in moved.out
    assert (await run(b, "status")).code == 0  # every command of home b finds its new ports

    seen_a = await start_polecat(a, tmp_path, "furiosa")
    seen_b = await start_polecat(b, tmp_path, "nux")
    assert (seen_a["ANTHROPIC_API_KEY"], seen_a["HOME"]) == (PLACEHOLDER_KEY, a["HOME"])
    assert (seen_b["ANTHROPIC_API_KEY"], seen_b["HOME"]) == (PLACEHOLDER_KEY, b["HOME"])
    assert seen_a["ANTHROPIC_BASE_URL"].split("/")[2] != seen_b["ANTHROPIC_BASE_URL"].split("/")[2]
    assert await key_through(seen_a, model) == "sk-home-a-key"
    assert await key_through(seen_b, model) == "sk-home-b-key"
    assert [name.split("-")[2] for name in sessions(a)] == ["furiosa"]
    assert [name.split("-")[2] for name in sessions(b)] == ["nux"]
    for key in ("sk-home-a-key", "sk-home-b-key"):
        assert not on_a_command_line(key)
        assert key not in tmux_argv.read_text()
        assert key not in json.dumps([seen_a, seen_b])


async def test_a_key_changed_between_two_ups_reaches_every_agent(
    runtime: Runtime, tmp_path: Path, model: ModelServer
) -> None:
    """After `down`, a new key and `up` again, a new agent's requests go out with the new key, and so
    do those of the agent started before, which still runs in the home's tmux server: its gateway
    URL outlived the worker, and the gateway holds the key, not the agent."""
    old = runtime("home", ANTHROPIC_API_KEY="sk-old-key", ANTHROPIC_BASE_URL=model.url)
    assert (await run(old, "up")).code == 0
    furiosa = await start_polecat(old, tmp_path, "furiosa")
    assert await key_through(furiosa, model) == "sk-old-key"
    assert (await run(old, "down")).code == 0

    new = {**old, "ANTHROPIC_API_KEY": "sk-new-key"}
    assert (await run(new, "up")).code == 0
    nux = await start_polecat(new, tmp_path, "nux")
    assert await key_through(nux, model) == "sk-new-key"
    assert await key_through(furiosa, model) == "sk-new-key"
    assert sorted(name.split("-")[2] for name in sessions(new)) == ["furiosa", "nux"]


async def test_a_failed_start_leaves_no_environment_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When tmux cannot start the agent, the file with the worker's keys is removed, not left behind."""
    real = shutil.which("tmux")
    assert real, "tmux is installed by .ci/run"
    shims = tmp_path / "failing-tmux"
    shims.mkdir()
    shim = shims / "tmux"  # the machine's tmux, except that it cannot start a pane's process
    shim.write_text(
        f'#!/bin/sh\ncase "$*" in *respawn-pane*) echo "fork failed" >&2; exit 1;; esac\nexec "{real}" "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-never-left-behind")
    socket = f"gastown-test-{uuid.uuid4().hex[:8]}"
    tmux = TmuxActivities(tmp_path / "home", socket)
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    launch = AgentLaunch(
        polecat=polecat(polecat_manifest("nux", "athena")), worktree=str(worktree), branch="polecat/nux"
    )
    try:
        with pytest.raises(RuntimeError, match="fork failed"):
            await ActivityEnvironment().run(tmux.start_agent, launch)
    finally:
        server = libtmux.Server(socket_name=socket)
        if server.is_alive():
            server.kill()
    agent_dirs = list((tmp_path / "home" / "polecats" / "default").glob("*.agent"))
    assert len(agent_dirs) == 1 and not (agent_dirs[0] / ENV_FILE).exists()
