"""Several hosts on one machine, each really separate: the tests of many machines run on these.

A host is a worker process in a mount namespace of its own (`unshare
--mount`), where one directory, `mountpoint`, shows that host's private
directory. Its GASTOWN_HOME, tmux server and rig checkouts live under that
path, so the same path names different files on each host: an activity run on
the wrong host finds nothing there and fails loudly, instead of quietly
working on another host's files. Everything else (the Temporal dev server,
the repositories' remotes, this code) is shared, as on a real network.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import libtmux

from tests.helpers import WORKER_COMMAND, worker_env
from tests.processes import Supervised


@dataclass
class Host:
    name: str  # its GASTOWN_HOST
    private: Path  # its own directory, as the test (outside every host) sees it
    mountpoint: Path  # where the host sees it
    temporal_address: str
    task_queue: str
    log: Path
    worker: Supervised = field(init=False, repr=False)

    def __post_init__(self) -> None:
        (self.private / "tmux").mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        env = {
            **worker_env(self.temporal_address, self.task_queue, self.home, f"gastown-{self.name}"),
            "GASTOWN_HOST": self.name,
            "TMUX_TMPDIR": str(self.mountpoint / "tmux"),
        }
        argv = [
            "unshare", "--mount", "--propagation", "private", "--",
            sys.executable, "-m", "tests.as_host", str(self.private), str(self.mountpoint), "--", *WORKER_COMMAND,
        ]  # fmt: skip
        self.worker = Supervised(f"worker of {self.name}", argv, env, self.log)

    def seen_from_test(self, path: str | Path) -> Path:
        """The file the host sees at `path` (under its mountpoint), as the test reads it."""
        return self.private / Path(path).relative_to(self.mountpoint)

    @property
    def home(self) -> Path:
        return self.mountpoint / "home"

    def start(self) -> None:
        """Its worker, in a mount namespace of its own; the tmux server it starts lives there too."""
        self.worker.start()

    def kill(self) -> None:
        """SIGKILL to its worker, as a machine that died; its agents and tmux server live on."""
        self.worker.kill()

    def stop(self) -> None:
        """The end of a test: its worker and its tmux server are gone."""
        self.worker.stop()
        socket = self.private / "tmux" / f"tmux-{os.getuid()}" / f"gastown-{self.name}"
        server = libtmux.Server(socket_path=str(socket))
        if server.is_alive():
            server.kill()
