"""A process a test starts, kills and starts again, as a supervisor (Kubernetes, systemd) would."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Supervised:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    crashes: int = 0  # exits of its own, each followed by a restart
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)  # None while killed
    started: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(self.process)

    def kill(self) -> None:
        """SIGKILL to the whole process group, and reaped."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def revive(self) -> None:
        """Start it again if it exited on its own (not if the harness killed it)."""
        if self.process is not None and self.process.poll() is not None:
            self.crashes += 1
            self.start()

    def stop(self) -> None:
        """The end of a run: every process it started is gone, with its group."""
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
