"""How fast a polecat responds, on the embedded topology a laptop user runs.

The runtime is started exactly as `gastown up` starts it (dev server with its
SQLite file, worker in its own process); the agent is the scripted custom
agent. Prints a markdown table and writes benchmarks/results/polecat.json.

    .venv/bin/python -m benchmarks.polecat [--samples 20] [--long-run 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from benchmarks.runtime import embedded, report
from bridge.reconcile import Reconciler, workflow_id_of
from client.settings import Settings
from crds import Polecat, parse_resource
from launch.usage import AGENT_LEDGER, UsageRecord, append
from tests.helpers import GASTOWN, make_git_rig, polecat_manifest, rig_manifest
from worker.embedded import EmbeddedRuntime

RESULTS = Path(__file__).parent / "results" / "polecat.json"


async def until(
    probe: Callable[[], Awaitable[bool]] | Callable[[], bool], interval: float, timeout: float = 60
) -> float:
    """Monotonic time at which `probe` first holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if not isinstance(value, bool):
            value = await value
        if value:
            return time.monotonic()
        await asyncio.sleep(interval)
    raise TimeoutError("benchmark condition never held")


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Bench:
    def __init__(self, settings: Settings, reconciler: Reconciler, work: Path, rig: str) -> None:
        self.settings, self.reconciler, self.work, self.rig = settings, reconciler, work, rig
        self.count = 0

    def manifest(self, *agent_args: str) -> tuple[str, dict[str, Any], Path]:
        self.count += 1
        name, runs = f"bench-{self.count}", self.work / f"runs-{self.count}"
        return name, polecat_manifest(name, self.rig, "--runs", str(runs), *agent_args), runs

    async def phase_is(self, name: str, phase: str) -> bool:
        polecat = await self.reconciler.find(Polecat, "default", name)
        return bool(polecat and polecat.status and polecat.status.phase == phase)

    async def apply_and_exit(self) -> tuple[float, float]:
        """(apply -> agent running, agent exit -> Succeeded visible), seconds."""
        gate = self.work / f"gate-{self.count + 1}"
        name, manifest, runs = self.manifest("--wait-for", str(gate))
        started = time.monotonic()
        await self.reconciler.apply(parse_resource(manifest))
        agent_up = await until(runs.exists, 0.002)
        await until(lambda: self.phase_is(name, "Working"), 0.01)
        exited = time.monotonic()
        gate.touch()
        visible = await until(lambda: self.phase_is(name, "Succeeded"), 0.005)
        return agent_up - started, visible - exited

    async def cli_apply(self) -> float:
        """`gastown apply -f` (a new process) -> agent running, seconds."""
        gate = self.work / f"gate-{self.count + 1}"
        name, manifest, runs = self.manifest("--wait-for", str(gate))
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(manifest))
        env = {**os.environ, **EmbeddedRuntime(self.settings).worker_env()}
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(GASTOWN, "apply", "-f", str(path), env=env)
        agent_up = await until(runs.exists, 0.002)
        await process.wait()
        gate.touch()
        await until(lambda: self.phase_is(name, "Succeeded"), 0.01)
        return agent_up - started

    async def terminate(self) -> float:
        """terminate signal -> the agent process gone, seconds."""
        name, manifest, runs = self.manifest("--wait-for", str(self.work / "never"))
        await self.reconciler.apply(parse_resource(manifest))
        await until(runs.exists, 0.002)
        await until(lambda: self.phase_is(name, "Working"), 0.01)
        pid = int(runs.read_text().split()[0])
        started = time.monotonic()
        await self.reconciler.signal(Polecat, "default", name, "terminate")
        gone = await until(lambda: not running(pid), 0.002)
        await until(lambda: self.phase_is(name, "Terminated"), 0.01)
        return gone - started

    async def history_events(self, seconds: float) -> int:
        """History events of a polecat whose agent works for `seconds`, reporting a model request
        every second (usage updates on: each heartbeat carries a new figure)."""
        gate = self.work / f"gate-{self.count + 1}"
        name, manifest, _ = self.manifest("--wait-for", str(gate))
        await self.reconciler.apply(parse_resource(manifest))
        await until(lambda: self.phase_is(name, "Working"), 0.01)
        polecat = await self.reconciler.get(Polecat, "default", name)
        assert polecat.status is not None and polecat.status.log_file is not None
        ledger = Path(polecat.status.log_file).with_suffix(".agent") / AGENT_LEDGER
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # the point: the agent works this long, spending
            append(ledger, UsageRecord(model="claude-sonnet-4-5", input_tokens=1000, output_tokens=100))
            await asyncio.sleep(1.0)
        gate.touch()
        await until(lambda: self.phase_is(name, "Succeeded"), 0.01)
        handle = self.reconciler.client.get_workflow_handle(workflow_id_of(Polecat, "default", name))
        return len((await handle.fetch_history()).events)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(samples: int, long_run: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gastown-bench-"))
    async with embedded(work) as (runtime, reconciler):
        git_rig = make_git_rig(work / "rig")
        await reconciler.apply(parse_resource(rig_manifest("bench", git_rig)))
        bench = Bench(runtime.settings, reconciler, work, "bench")
        await bench.apply_and_exit()  # warm-up: imports, first worktree, caches
        starts, exits = zip(*[await bench.apply_and_exit() for _ in range(samples)], strict=True)
        cli = [await bench.cli_apply() for _ in range(max(3, samples // 4))]
        stops = [await bench.terminate() for _ in range(samples)]
        short_events = await bench.history_events(0.5)
        long_events = await bench.history_events(long_run)

    def row(label: str, values: list[float] | tuple[float, ...], goal: str) -> dict[str, Any]:
        data = list(values)
        return {
            "metric": label,
            "p50_ms": round(statistics.median(data) * 1000, 1),
            "p95_ms": round(percentile(data, 0.95) * 1000, 1),
            "max_ms": round(max(data) * 1000, 1),
            "samples": len(data),
            "goal": goal,
        }

    per_hour = long_events  # events do not grow with run time (see both rows): a 1 h run has the same
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "latency": [
            row("apply -> agent process running (API)", starts, "p50 < 300 ms"),
            row("gastown apply -> agent running (new CLI process)", cli, "(includes CLI start-up)"),
            row("agent exit -> Succeeded visible in get", exits, "< 1 s"),
            row("terminate -> agent process gone", stops, "< 1 s"),
        ],
        "history": {
            "events_agent_0.5s": short_events,
            f"events_agent_{long_run:g}s": long_events,
            "events_per_polecat_hour": per_hour,
            "goal": "< 500 per polecat-hour",
        },
    }


def table(result: dict[str, Any]) -> str:
    lines = ["| metric | p50 ms | p95 ms | max ms | n | goal |", "|---|---|---|---|---|---|"]
    for r in result["latency"]:
        lines.append(
            f"| {r['metric']} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | {r['samples']} | {r['goal']} |"
        )
    history = result["history"]
    lines.append("")
    lines.append("| history events per polecat | count | goal |")
    lines.append("|---|---|---|")
    for key, value in history.items():
        if key.startswith("events"):
            lines.append(
                f"| {key} | {value} | {history['goal'] if key == 'events_per_polecat_hour' else ''} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--long-run", type=float, default=60.0, help="seconds the long agent works")
    options = parser.parse_args()
    report(RESULTS, asyncio.run(main(options.samples, options.long_run)), table)
