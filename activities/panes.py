"""What tmux says of its panes: one pane by session, or every pane of the server at once.

A watcher learns of its agent's exit from the process's pidfd, at once and for
free; it asks tmux only whether the session still exists. At hundreds of agents
a `list-panes` per watcher every few seconds was hundreds of tmux processes a
second, so watchers share one census of the whole server (`PaneCensus`), taken
at most once per `fresh_for` seconds whoever asks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# What `list-panes -F` prints of a pane, `|`-separated; a census puts the session's name first.
PANE_FORMAT = "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}|#{pane_pid}|#{pid}"


@dataclass(frozen=True)
class Pane:
    """What tmux says of a pane. `dead` comes from the pty closing and
    `exit_code` from reaping the process: tmux can know the first before
    the second, or (with a lost SIGCHLD) never know the second."""

    dead: bool
    exit_code: int | None
    pid: int
    server_pid: int


def parse_pane(line: str) -> Pane | None:
    """A pane from one line of PANE_FORMAT; None if the line is not one (no such session)."""
    fields = line.strip().split("|")
    if len(fields) != 5:
        return None
    dead, status, signal_number, pane_pid, server_pid = fields
    exit_code = None
    if status:
        exit_code = int(status)
    elif signal_number:
        exit_code = 128 + int(signal_number)  # as a shell reports a killed process
    return Pane(dead == "1", exit_code, int(pane_pid), int(server_pid))


class PaneCensus:
    """The sessions of a tmux server that have a pane, from one `list-panes -a` shared by every
    watcher. `list_all(format)` runs it; its answer counts for `fresh_for` seconds."""

    def __init__(self, list_all: Callable[[str], Awaitable[str]], fresh_for: float) -> None:
        self._list_all, self._fresh_for = list_all, fresh_for
        self._sessions: frozenset[str] = frozenset()
        self._taken = float("-inf")
        self._lock = asyncio.Lock()

    async def has(self, session: str) -> bool:
        """Whether `session` had a pane at the latest census (taken now if the last is stale)."""
        async with self._lock:  # one census at a time: the others wait for it and read it
            if time.monotonic() - self._taken >= self._fresh_for:
                taken = time.monotonic()
                out = await self._list_all("#{session_name}")
                self._sessions, self._taken = frozenset(out.split()), taken
        return session in self._sessions
