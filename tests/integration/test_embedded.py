"""`gastown up` / `gastown down`: the embedded runtime a laptop user starts."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

import libtmux
import psutil
import yaml

from tests.helpers import GASTOWN, GitRig, free_port, make_git_rig, polecat_manifest, rig_manifest, wait_until
from tests.integration.test_cli import Result


async def run(env: dict[str, str], *args: str) -> Result:
    process = await asyncio.create_subprocess_exec(
        GASTOWN, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def own_runtime(home: Path, socket: str) -> dict[str, str]:
    """The environment of a `gastown` run with a home, ports and a tmux socket of its own."""
    return {
        **os.environ,
        "GASTOWN_HOME": str(home),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "GASTOWN_UI_PORT": str(free_port()),
        "GASTOWN_HTTP_PORT": str(free_port()),
        "GASTOWN_BOARD_PORT": str(free_port()),
        "GASTOWN_TMUX_SOCKET": socket,
        "GASTOWN_TASK_QUEUE": "gastown",
    }


async def test_up_runs_a_polecat_and_state_survives_down_and_up(tmp_path: Path) -> None:
    """`up` starts server, UI, worker and the town board; a polecat succeeds; after `down` and `up` it
    is still there."""
    home, socket = tmp_path / "home", f"gastown-embedded-{os.getpid()}"
    env = own_runtime(home, socket)
    git_rig: GitRig = make_git_rig(tmp_path / "rig")
    manifest = tmp_path / "town.yaml"
    manifest.write_text(
        yaml.safe_dump_all(
            [rig_manifest("embedded", git_rig), polecat_manifest("max", "embedded", "--commit", "m.txt=m")]
        )
    )
    try:
        up = await run(env, "up")
        assert up.code == 0, up.err
        assert up.out.splitlines()[-1].startswith(
            f"ready: Temporal {env['TEMPORAL_ADDRESS']}, UI http://127.0.0.1:"
        )
        ui = await asyncio.to_thread(
            urllib.request.urlopen, f"http://127.0.0.1:{env['GASTOWN_UI_PORT']}/", timeout=10
        )
        assert ui.status == 200
        board = next(line for line in up.out.splitlines() if line.startswith("started the town board"))
        url = board.split(" on ", 1)[1].split(",", 1)[0]
        page = await asyncio.to_thread(urllib.request.urlopen, url, timeout=10)
        assert page.status == 200 and b"Gas Town" in page.read()
        assert f"town board on {url}" in (await run(env, "status")).out.splitlines()
        token = home / "board.token"  # the actions' token: private, and never in the board's log
        assert token.stat().st_mode & 0o777 == 0o600
        assert token.read_text().strip() not in (home / "logs" / "board.log").read_text()
        assert (await run(env, "up")).out.splitlines()[0].startswith("Temporal dev server already running")

        assert (await run(env, "apply", "-f", str(manifest))).code == 0

        async def phase() -> str:
            result = await run(env, "get", "polecat", "max", "-o", "json")
            return str(json.loads(result.out)["status"]["phase"]) if result.code == 0 else ""

        async def finished() -> str | None:
            current = await phase()
            return current if current in ("Succeeded", "Failed") else None

        assert await wait_until(finished, "max to finish", timeout=60) == "Succeeded"
        pids = [int((home / "run" / name).read_text()) for name in ("temporal.pid", "worker.pid")]

        down = await run(env, "down")
        assert down.out.splitlines() == ["stopped board", "stopped worker", "stopped temporal"]
        assert not any(
            psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids
        )
        assert (await run(env, "get", "polecats")).code == 2

        assert (await run(env, "up")).code == 0
        assert await phase() == "Succeeded"  # kept in the SQLite file across the restart
    finally:
        await run(env, "down")
        server = libtmux.Server(socket_name=socket)
        if server.is_alive():
            server.kill()
