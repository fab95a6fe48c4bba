"""How fast the Witness sees trouble, and what a check of many polecats costs, on the embedded topology.

- detection latency: polecats whose agent prints, then hangs (the scripted
  agent, --stall-runs), under a Witness with stuckThreshold T and
  checkInterval I; latency runs from the agent's last output (its log
  file's mtime) to the Stuck alert arriving at a local webhook. The issue's
  bound: T + I + a few seconds;
- check time: 50, then 500 working polecats (agent `sleep`), one Witness;
  each check is one scheduled run (WitnessTick), timed from its start to
  its close in Temporal's own record; the look itself is one visibility
  query (pages of 1,000), not a call per polecat.

Prints a markdown table and writes benchmarks/results/witness.json.

    .venv/bin/python -m benchmarks.witness [--polecats 50 500] [--latency-samples 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from temporalio.service import RPCError

from benchmarks.runtime import embedded, report
from bridge.reconcile import Reconciler
from crds import Polecat, Witness, parse_resource
from tests.helpers import (
    SCRIPTED_AGENT,
    free_port,
    make_git_rig,
    parsed,
    polecat_manifest,
    rig_manifest,
    wait_until,
    witness_manifest,
)

RESULTS = Path(__file__).parent / "results" / "witness.json"
THRESHOLD, INTERVAL = 5.0, 2.0  # seconds, for the latency runs
APPLY_AT_ONCE = 16


def witness(rig: str, name: str, **spec: Any) -> Witness:
    """A Witness with no startup grace; every caller names its interval and threshold."""
    return parsed(Witness, witness_manifest(rig, name, **spec))


def polecat(name: str, rig: str, command: list[str]) -> Polecat:
    """A polecat whose custom agent is `command`."""
    manifest = polecat_manifest(
        name, rig, beadID=None, taskDescription="benchmark", agentConfig={"command": command}
    )
    return parsed(Polecat, manifest)


async def apply_all(reconciler: Reconciler, polecats: list[Polecat]) -> None:
    limit = asyncio.Semaphore(APPLY_AT_ONCE)

    async def one(item: Polecat) -> None:
        async with limit:
            await reconciler.apply(item)

    await asyncio.gather(*(one(item) for item in polecats))


async def working(reconciler: Reconciler, count: int) -> bool:
    found = await reconciler.list(Polecat, "default")
    return sum(1 for p in found if p.status and p.status.phase == "Working") >= count


async def detection_latency(reconciler: Reconciler, work: Path, rig: str, samples: int) -> list[float]:
    """Seconds from each hung agent's last output to its Stuck alert at the webhook."""
    arrived: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        for line in (await request.json())["text"].splitlines()[1:]:
            if line.startswith("Stuck: polecat default/"):
                arrived.setdefault(line.split()[2].rstrip(":").split("/")[1], time.time())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/{tail:.*}", hook)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    slack = {"webhookURL": f"http://127.0.0.1:{port}/hook/secret"}
    await reconciler.apply(
        witness(
            rig,
            "latency",
            checkInterval=f"{INTERVAL:g}s",
            stuckThreshold=f"{THRESHOLD:g}s",
            notifications={"slack": slack},
        )
    )
    names = [f"quiet{n}" for n in range(samples)]
    runs = work / "runs"
    runs.mkdir()
    agent = [sys.executable, str(SCRIPTED_AGENT), "--say", "thinking", "--stall-runs", "1"]
    await apply_all(reconciler, [polecat(n, rig, [*agent, "--runs", str(runs / n)]) for n in names])
    await wait_until(lambda: len(arrived) == samples, "every hung polecat reported Stuck", 120)
    latencies = []
    for name in names:
        found = await reconciler.get(Polecat, "default", name)
        assert found.status is not None and found.status.log_file
        last_output = Path(found.status.log_file).stat().st_mtime
        latencies.append(arrived[name] - last_output)
    await runner.cleanup()
    await reconciler.delete(Witness, "default", "latency")
    for name in names:
        await reconciler.delete(Polecat, "default", name)
    return latencies


async def check_times(
    reconciler: Reconciler, rig: str, counts: list[int], checks: int
) -> dict[int, list[float]]:
    """Seconds per scheduled check (start to close of its WitnessTick run) with `count` working polecats."""
    client = reconciler.client
    times: dict[int, list[float]] = {}
    started = 0
    for count in counts:
        await apply_all(
            reconciler, [polecat(f"p{n:04}", rig, ["sleep", "86400"]) for n in range(started, count)]
        )
        started = count
        await wait_until(lambda: working(reconciler, count), f"{count} polecats working", 900)  # noqa: B023
        await reconciler.apply(witness(rig, f"w{count}", checkInterval="1h", stuckThreshold="1h"))
        schedule = client.get_schedule_handle(f"witness/default/w{count}")

        async def ran(seen: int, schedule: Any = schedule) -> Any:
            """The id of the schedule's latest run, once it has more than `seen` and none is running."""
            try:
                described = await schedule.describe()
            except RPCError:
                return None  # the Witness has not made its schedule yet
            if described.info.num_actions <= seen or described.info.running_actions:
                return None
            return described.info.recent_actions[-1].action.workflow_id

        await wait_until(lambda: ran(0), "the witness's first check", 120)
        durations: list[float] = []
        for _ in range(checks):
            await asyncio.sleep(1.1)  # the next run's id (which counts whole seconds) must differ
            seen = (await schedule.describe()).info.num_actions
            await schedule.trigger()
            tick = await wait_until(lambda: ran(seen), "a triggered check", 120)  # noqa: B023
            description = await client.get_workflow_handle(tick).describe()
            assert description.close_time is not None
            durations.append((description.close_time - description.start_time).total_seconds())
        found = await reconciler.get(Witness, "default", f"w{count}")
        assert found.status is not None and found.status.polecats_monitored >= count
        times[count] = durations
        await reconciler.delete(Witness, "default", f"w{count}")
    return times


async def main(counts: list[int], samples: int, checks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gastown-bench-witness-") as temp:
        work = Path(temp)
        async with embedded(work) as (_, reconciler):
            git_rig = make_git_rig(work / "rig")
            rig = parse_resource(rig_manifest("bench", git_rig))
            await reconciler.apply(rig)
            latencies = await detection_latency(reconciler, work, "bench", samples)
            times = await check_times(reconciler, "bench", counts, checks)
    rows = [
        {
            "metric": f"detection latency, T={THRESHOLD:g}s I={INTERVAL:g}s ({samples} polecats)",
            "p50": statistics.median(latencies),
            "max": max(latencies),
            "goal": f"<= T + I + a few s = {THRESHOLD + INTERVAL:g} s + a few",
        }
    ]
    for count, durations in times.items():
        rows.append(
            {
                "metric": f"one check of {count} working polecats ({len(durations)} checks)",
                "p50": statistics.median(durations),
                "max": max(durations),
                "goal": "one visibility query, not a call per polecat",
            }
        )
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = ["| metric | p50 (s) | max (s) | goal |", "|---|---|---|---|"]
    lines += [f"| {r['metric']} | {r['p50']:.2f} | {r['max']:.2f} | {r['goal']} |" for r in result["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--polecats", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--latency-samples", type=int, default=5)
    parser.add_argument("--checks", type=int, default=5)
    options = parser.parse_args()
    report(RESULTS, asyncio.run(main(options.polecats, options.latency_samples, options.checks)), table)
