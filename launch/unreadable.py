"""Keep a process's memory and environment from others of the same user (standard library only).

A pod's entrypoint holds the provider's key for its gateway, and its agent runs
as the same user: without this, the agent could read the key from
`/proc/<entrypoint>/environ`. A non-dumpable process's /proc files and memory
are closed to other processes of its user (ptrace's access rule); its children
are dumpable again once they exec, so the agent itself is unaffected.
"""

from __future__ import annotations

import contextlib
import ctypes

PR_SET_DUMPABLE = 4


def make_unreadable() -> None:
    """Make this process non-dumpable (a no-op where prctl is missing: not Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
