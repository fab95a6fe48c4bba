"""Looking at a polecat's agent: its output (`gastown logs`) and its live session (`gastown attach`).

A local agent's output is its log file and its session a tmux session on its
host; a pod's output is the agent container's log, read through the API
server (the kubeconfig the worker uses, `board.logs`), and a pod takes no input.
"""

from __future__ import annotations

import sys

from board.logs import CannotRead, pod_log
from client.settings import Settings
from crds import Polecat


class CannotLook(Exception):
    """The polecat's agent cannot be looked at from here; the message says why."""


def attach_argv(settings: Settings, polecat: Polecat, write: bool) -> list[str]:
    """The tmux command that attaches this terminal to a local polecat's session (read-only unless
    `write`). Detaching (C-b d) leaves the agent running."""
    status = polecat.status
    session = status.tmux_session if status else None
    if not session or not status or status.phase not in ("Working", "Pending"):
        phase = status.phase if status else "Pending"
        raise CannotLook(f"polecat {polecat.name} has no live session (phase {phase}); see gastown logs")
    if status.host and status.host != settings.host:
        raise CannotLook(
            f"polecat {polecat.name}: its session is on host {status.host}; run gastown attach there"
        )
    return [
        "tmux",
        "-L",
        settings.tmux_socket,
        "attach-session",
        *([] if write else ["-r"]),
        "-t",
        f"={session}",
    ]


async def print_pod_log(settings: Settings, polecat: Polecat, follow: bool) -> None:
    """The agent container's log, as `kubectl logs [-f]` prints it."""
    try:
        async for chunk in pod_log(settings, polecat, follow):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    except CannotRead as error:
        raise CannotLook(str(error)) from None
