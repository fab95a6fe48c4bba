"""Record a history of every workflow type from one `gastown demo`, for the replay test.

    .venv/bin/python -m tests.record_histories

writes `tests/data/histories/<type>-<commit>.json` (the commit checked out) for
each workflow type the demo runs. The demo runs on the embedded runtime of a
fresh GASTOWN_HOME on ports of its own, so nothing else on the machine is
touched; `tests/workflows/test_recorded_histories.py` then replays them all.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from client.connection import connect
from client.settings import Settings
from tests.helpers import free_port

HISTORIES = Path(__file__).parent / "data" / "histories"


async def record(settings: Settings, commit: str) -> list[Path]:
    """One history of each workflow type the demo ran (the longest: it shows the most)."""
    client = await connect(settings)
    longest: dict[str, tuple[int, str]] = {}  # workflow type -> (events, the history as JSON)
    async for execution in client.list_workflows():
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        kind = execution.workflow_type
        if kind not in longest or len(history.events) > longest[kind][0]:
            longest[kind] = (len(history.events), history.to_json())
    written = []
    for kind, (_, text) in sorted(longest.items()):
        path = HISTORIES / f"{kind.lower()}-{commit}.json"
        path.write_text(text)
        written.append(path)
    return written


def main() -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    )
    home = Path(tempfile.mkdtemp(prefix="gastown-record-"))
    env = {
        **os.environ,
        "GASTOWN_HOME": str(home),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "GASTOWN_UI_PORT": str(free_port()),
        "GASTOWN_HTTP_PORT": str(free_port()),
        "GASTOWN_TMUX_SOCKET": f"gastown-record-{os.getpid()}",
    }
    gastown = [sys.executable, "-m", "cli.commands"]
    subprocess.run([*gastown, "up"], env=env, check=True)
    try:
        subprocess.run([*gastown, "demo"], env=env, check=True)
        os.environ.update(env)
        for path in asyncio.run(record(Settings(), commit.stdout.strip())):
            print(path)
    finally:
        subprocess.run([*gastown, "down"], env=env, check=True)


if __name__ == "__main__":
    main()
