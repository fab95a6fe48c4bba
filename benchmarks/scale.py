"""Many polecats at once: how fast they start, what the worker holds, how big their histories are.

For each size N (100 and 500 by default), N polecats are applied at once
(through the reconcile core, 20 applies in flight) on the embedded runtime.
Their agent is trivial, `flock --shared GATE true`: it waits on a lock the
benchmark holds, so all N work at the same time, each in its tmux session
and worktree. Once all N are Working the lock is released and all N succeed.

py-spy (from PyPI) samples the worker while the largest size starts (unless
`--no-profile`), and the table gains where the worker's time went
(results/scale-profile.txt: its stacks, folded, for a flame graph). Every run
records the CPU seconds the worker and the dev server spend on the start.

    .venv/bin/python -m benchmarks.scale [--sizes 100 500] [--no-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from benchmarks.profiling import hot_frames, hot_frames_table, profiled
from benchmarks.runtime import embedded, report
from bridge.reconcile import Reconciler, workflow_id_of
from crds import Polecat, parse_resource
from tests.helpers import make_git_rig, rig_manifest
from worker.embedded import EmbeddedRuntime

RESULTS = Path(__file__).parent / "results" / "scale.json"
PROFILE = RESULTS.with_name("scale-profile.txt")
IN_FLIGHT = 20  # applies at once, as a script or a convoy would send them
STEADY = 10.0  # seconds all N work together, measured


def manifest(name: str, namespace: str, gate: Path, rig: str = "scale") -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "rig": rig,
            "desiredState": "Working",
            "beadID": f"sc-{name}",
            "agent": "custom",
            "agentConfig": {"command": [shutil.which("flock") or "flock", "--shared", str(gate), "true"]},
        },
    }


@contextlib.contextmanager
def held(gate: Path) -> Iterator[None]:
    """An exclusive lock on `gate`: every agent waits until it is let go."""
    with gate.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class MemoryPeak:
    """The largest resident size each process reached, sampled every 0.2 s while it runs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)

    async def sample(self) -> None:
        while True:
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
            await asyncio.sleep(0.2)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def phases(reconciler: Reconciler, namespace: str) -> Counter[str]:
    found = await reconciler.list(Polecat, namespace)
    return Counter(p.status.phase if p.status else "Pending" for p in found)


async def wait_for(reconciler: Reconciler, namespace: str, phase: str, count: int, timeout: float) -> float:
    """Seconds until `count` polecats of `namespace` are in `phase`."""
    started = time.monotonic()
    while (await phases(reconciler, namespace))[phase] < count:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{phase}: {dict(await phases(reconciler, namespace))} of {count}")
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def one_size(
    runtime: EmbeddedRuntime, reconciler: Reconciler, work: Path, size: int, profile: Path | None = None
) -> dict[str, Any]:
    namespace, gate = f"scale-{size}", work / f"gate-{size}"
    pids = {"worker": runtime.worker.pid(), "temporal": runtime.server.pid()}
    memory = MemoryPeak({name: pid for name, pid in pids.items() if pid is not None})
    before = {name: process.memory_info().rss for name, process in memory.processes.items()}
    sampling = asyncio.create_task(memory.sample())
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def apply(index: int) -> None:
        async with limit:
            await reconciler.apply(parse_resource(manifest(f"p{index:04d}", namespace, gate)))

    with held(gate):
        at_start = {name: cpu_seconds(process) for name, process in memory.processes.items()}
        started = time.monotonic()
        async with profiled(pids["worker"], profile):
            await asyncio.gather(*(apply(i) for i in range(size)))
            applied = time.monotonic() - started
            working = await wait_for(reconciler, namespace, "Working", size, timeout=60 + size)
            all_working = time.monotonic() - started
        steady = {name: cpu_seconds(process) for name, process in memory.processes.items()}
        await asyncio.sleep(STEADY)  # all N at work: the steady state
        busy = {
            name: (cpu_seconds(process) - steady[name]) / STEADY for name, process in memory.processes.items()
        }
    released = time.monotonic()
    await wait_for(reconciler, namespace, "Succeeded", size, timeout=60 + size)
    finished = time.monotonic() - released
    sampling.cancel()
    events = []
    for index in range(size):
        handle = reconciler.client.get_workflow_handle(workflow_id_of(Polecat, namespace, f"p{index:04d}"))
        events.append(len((await handle.fetch_history()).events))
    mib = 1024 * 1024
    return {
        "polecats": size,
        "apply_seconds": round(applied, 1),
        "all_working_seconds": round(all_working, 1),
        "starts_per_second": round(size / all_working, 1),
        "working_after_apply_seconds": round(working, 1),
        "release_to_all_succeeded_seconds": round(finished, 1),
        "worker_rss_mib": {
            "before": round(before["worker"] / mib),
            "peak": round(memory.peak["worker"] / mib),
        },
        "temporal_rss_mib": {
            "before": round(before["temporal"] / mib),
            "peak": round(memory.peak["temporal"] / mib),
        },
        "history_events_per_polecat": {"mean": round(statistics.mean(events), 1), "max": max(events)},
        "cpu_while_all_work_percent": {name: round(share * 100) for name, share in busy.items()},
        "cpu_seconds_of_the_start": {name: round(steady[name] - at_start[name], 1) for name in steady},
        **({"worker_profile": hot_frames(profile)} if profile else {}),
    }


async def main(sizes: list[int], profile: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gastown-scale-bench-"))
    try:
        async with embedded(work) as (runtime, reconciler):
            await reconciler.apply(parse_resource(rig_manifest("scale", make_git_rig(work / "rig"))))
            runs = [
                await one_size(
                    runtime, reconciler, work, size, PROFILE if profile and size == max(sizes) else None
                )
                for size in sizes
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"cpus": os.cpu_count(), "runs": runs}


def table(result: dict[str, Any]) -> str:
    lines = [
        "| concurrent polecats | all Working after | starts/s | worker RSS before → peak | "
        "dev server RSS before → peak | CPU while all work (worker, dev server) | "
        "history events / polecat (mean, max) | release → all Succeeded | CPU s of the start "
        "(worker, dev server) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        worker, temporal, events = (
            run["worker_rss_mib"],
            run["temporal_rss_mib"],
            run["history_events_per_polecat"],
        )
        lines.append(
            f"| {run['polecats']} | {run['all_working_seconds']} s | {run['starts_per_second']} | "
            f"{worker['before']} → {worker['peak']} MiB | {temporal['before']} → {temporal['peak']} MiB | "
            f"{run['cpu_while_all_work_percent']['worker']} %, {run['cpu_while_all_work_percent']['temporal']} % | "
            f"{events['mean']}, {events['max']} | {run['release_to_all_succeeded_seconds']} s | "
            f"{run['cpu_seconds_of_the_start']['worker']}, {run['cpu_seconds_of_the_start']['temporal']} |"
        )
    for run in result["runs"]:
        if "worker_profile" in run:
            title = f"Where the worker's time went while {run['polecats']} started (py-spy):"
            lines += hot_frames_table(title, run["worker_profile"])
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--no-profile", action="store_true", help="no py-spy on the worker")
    options = parser.parse_args()
    report(RESULTS, asyncio.run(main(options.sizes, not options.no_profile)), table)
