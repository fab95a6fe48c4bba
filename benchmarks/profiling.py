"""Where a process's time goes while a benchmark runs: py-spy (from PyPI) samples it.

The samples are folded stacks (one line per distinct stack and its count), which
flame-graph tools read; `hot_frames` reduces them to the frames most often on
the stack, for a benchmark's table.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# Frames under which every sample of our processes sits (starting the program, click, the event
# loop, a thread pool's worker): they say nothing of where the time goes.
EVERYWHERE = (
    "<module>", "_run_module_as_main", "_run_code", "main (cli/", "_run.<locals>", "Command.", "Group.",
    "Context.invoke", "Runner.run", "BaseEventLoop.run", "BaseEventLoop._run_once", "Handle._run",
    "Thread._bootstrap", "Thread.run", "_worker (concurrent", "_WorkItem.run", "EpollSelector.select",
    "run (asyncio", "ThreadedChildWatcher._do_waitpid",  # the last: a thread per child, blocked in waitpid
)  # fmt: skip


@contextlib.asynccontextmanager
async def profiled(pid: int | None, into: Path | None) -> AsyncIterator[None]:
    """py-spy sampling process `pid` into `into` (folded stacks) while the context lasts; nothing
    if either is None."""
    if into is None or pid is None:
        yield
        return
    spy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--format", "raw",
        "--rate", "100", "--function", "--nonblocking", "--output", str(into), stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
        await spy.wait()


def hot_frames(folded: Path, top: int = 12) -> list[dict[str, Any]]:
    """The frames most often on the process's stack (a frame counted once per sample), as shares."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    return [
        {"frame": frame, "percent": round(100 * count / max(total, 1), 1)}
        for frame, count in inclusive.most_common()
        if frame and not frame.startswith(EVERYWHERE)
    ][:top]


def hot_frames_table(title: str, frames: list[dict[str, Any]]) -> list[str]:
    """`hot_frames` as a benchmark's table lines, under `title`."""
    lines = ["", title, "", "| frame | % of samples |", "|---|---|"]
    return lines + [f"| `{hot['frame']}` | {hot['percent']} |" for hot in frames]
