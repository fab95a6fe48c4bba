"""The runtime every benchmark measures: the embedded topology, started as `gastown up` starts it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bridge.reconcile import Reconciler
from tests.helpers import free_port
from worker.client import connect
from worker.embedded import EmbeddedRuntime
from worker.settings import Settings


@contextlib.asynccontextmanager
async def embedded(work: Path, **settings: Any) -> AsyncIterator[tuple[EmbeddedRuntime, Reconciler]]:
    """Dev server (its SQLite file in `work`) and worker as processes; stopped, and its agents' tmux
    server killed, afterwards. `settings`: more Settings fields (KUBECONFIG=...)."""
    config = Settings(
        GASTOWN_HOME=work / "home",
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        GASTOWN_UI_PORT=free_port(),
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
