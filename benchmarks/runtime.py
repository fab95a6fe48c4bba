"""The runtime every benchmark measures: the embedded topology, started as `gastown up` starts it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn

from bridge.reconcile import Reconciler
from client.connection import connect
from client.settings import Settings
from tests.helpers import free_port
from worker.embedded import EmbeddedRuntime


@contextlib.asynccontextmanager
async def embedded(work: Path, **settings: Any) -> AsyncIterator[tuple[EmbeddedRuntime, Reconciler]]:
    """Dev server (its SQLite file in `work`) and worker as processes; stopped, and its agents' tmux
    server killed, afterwards. `settings`: more Settings fields (KUBECONFIG=...)."""
    config = Settings(
        GASTOWN_HOME=work / "home",
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        GASTOWN_UI_PORT=free_port(),
        GASTOWN_HTTP_PORT=free_port(),
        GASTOWN_TMUX_SOCKET=f"gastown-bench-{os.getpid()}",
        **settings,
    )
    runtime = EmbeddedRuntime(config)
    try:
        await runtime.up()
        yield runtime, Reconciler(await connect(config), config.task_queue, home=config.home)
    finally:
        runtime.down()
        subprocess.run(["tmux", "-L", config.tmux_socket, "kill-server"], capture_output=True)


def report(path: Path, result: dict[str, Any], table: Callable[[dict[str, Any]], str]) -> NoReturn:
    """Write `result` to `path`, print its table, and exit at once (the SDK's native threads can
    abort a normal interpreter exit: sdk-python #300)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nwritten to {path}")
    sys.stdout.flush()
    os._exit(0)
