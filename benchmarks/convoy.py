"""How far a convoy goes, and how fast beads sync, on the embedded topology.

- beads sync: a BeadStore over the 2,669-record real export, its Schedule
  triggered 10 times: trigger -> the new lastSync visible in `gastown get`
  (and the reader alone, 20 times);
- status follows: a convoy of 10 beads at parallelism 1: from each polecat's
  own Succeeded to the convoy's status showing it;
- convoy: N beads at parallelism P with a scripted agent that works 1 s (by default), run
  end to end (dev server and worker as `gastown up` starts them, real tmux and
  git): wall time from apply to Completed, and the most agents seen at once.

Prints a markdown table and writes benchmarks/results/convoy.json.

    .venv/bin/python -m benchmarks.convoy [--beads 200] [--parallelism 20] [--agent-seconds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from activities.beads import read_source
from benchmarks.runtime import embedded, report
from bridge.reconcile import Reconciler
from crds import BeadStore, Convoy, Polecat, parse_resource
from crds.beadstore import BeadSource
from tests.helpers import (
    REPO_ROOT,
    beadstore_manifest,
    convoy_manifest,
    make_git_rig,
    max_concurrent,
    reach,
    rig_manifest,
    write_beads,
)

RESULTS = Path(__file__).parent / "results" / "convoy.json"
EXPORT = REPO_ROOT / "tests" / "data" / "beads" / "gastown-issues.jsonl"


def read_times(runs: int = 20) -> list[float]:
    """The reader alone: the whole export, parsed and validated."""
    source = BeadSource(type="jsonl", path=str(EXPORT))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        snapshot = read_source(source, None)
        times.append(time.perf_counter() - start)
    assert len(snapshot.beads) == 2669
    return times


async def sync_times(reconciler: Reconciler, work: Path, runs: int = 10) -> list[float]:
    """A whole sync as people see it: Schedule triggered -> the new lastSync in `gastown get`."""
    await reconciler.apply(parse_resource(rig_manifest("export", make_git_rig(work / "export"))))
    await reconciler.apply(parse_resource(beadstore_manifest("export", "export", str(EXPORT))))

    async def synced_after(moment: datetime | None) -> datetime:
        while True:
            found = await reconciler.find(BeadStore, "default", "export")
            status = found.status if found else None
            if status and status.phase == "Synced" and status.last_sync and status.last_sync != moment:
                assert status.issue_count == 2669
                return status.last_sync
            await asyncio.sleep(0.01)

    last = await synced_after(None)
    schedule = reconciler.client.get_schedule_handle("beadstore/default/export")
    times = []
    for _ in range(runs):
        await asyncio.sleep(1.1)  # lastSync has whole seconds (RFC 3339, as Kubernetes): let it move
        start = time.perf_counter()
        await schedule.trigger()
        last = await synced_after(last)
        times.append(time.perf_counter() - start)
    return times


async def status_latencies(reconciler: Reconciler, work: Path, beads: int = 10) -> list[float]:
    """Polecat Succeeded (its own status) -> the convoy's status shows it, one bead at a time."""
    ids = [f"lat-{n}" for n in range(1, beads + 1)]
    await reconciler.apply(parse_resource(rig_manifest("latency", make_git_rig(work / "latency"))))
    await reconciler.apply(parse_resource(convoy_manifest("latency", "latency", ids, parallelism=1)))
    polecat_done: dict[str, float] = {}
    convoy_done: dict[str, float] = {}
    while len(convoy_done) < beads:
        convoy = await reconciler.find(Convoy, "default", "latency")
        now = time.monotonic()
        for ref in convoy.status.polecats if convoy and convoy.status else []:
            if ref.phase == "Succeeded":
                convoy_done.setdefault(ref.name, now)
            elif ref.name not in polecat_done:
                polecat = await reconciler.find(Polecat, "default", ref.name)
                if polecat and polecat.status and polecat.status.phase == "Succeeded":
                    polecat_done[ref.name] = time.monotonic()
        await asyncio.sleep(0.01)
    return [convoy_done[name] - polecat_done[name] for name in polecat_done]


async def run(beads: int, parallelism: int, agent_seconds: float) -> tuple[list[float], dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="gastown-bench-"))
    ids = [f"gt-{n}" for n in range(1, beads + 1)]
    spans = work / "spans"
    async with embedded(work) as (_, reconciler):
        syncs = await sync_times(reconciler, work)
        follows = await status_latencies(reconciler, work)
        write_beads(work / "issues.jsonl", [{"id": bead} for bead in ids])
        rig = rig_manifest("bench", make_git_rig(work / "rig"), beadsPrefix="gt")
        await reconciler.apply(parse_resource(rig))
        await reconciler.apply(
            parse_resource(beadstore_manifest("beads", "bench", str(work / "issues.jsonl")))
        )
        await reach(reconciler, BeadStore, "beads", "Synced")
        agent = ("--spans", str(spans), "--say", "working", "--pause", str(agent_seconds))
        started = time.monotonic()
        await reconciler.apply(
            parse_resource(convoy_manifest("bench", "bench", ids, *agent, parallelism=parallelism))
        )
        found = await reach(reconciler, Convoy, "bench", "Completed", "Failed", timeout=1800)
        wall = time.monotonic() - started
    assert found.status is not None
    return syncs, {
        "status_follows_ms": {
            "p50": round(statistics.median(follows) * 1000, 1),
            "max": round(max(follows) * 1000, 1),
            "samples": len(follows),
        },
        "beads": beads,
        "parallelism": parallelism,
        "phase": found.status.phase,
        "completed": found.status.completed,
        "wall_s": round(wall, 1),
        "beads_per_minute": round(beads / wall * 60, 1),
        "max_agents_at_once": max_concurrent(spans),
        "agent_work_s": agent_seconds,
        "ideal_wall_s": round(beads / parallelism * agent_seconds, 1),
    }


def table(result: dict[str, Any]) -> str:
    sync, convoy = result["sync"], result["convoy"]
    follows = convoy["status_follows_ms"]
    return "\n".join(
        [
            "| metric | value | goal |",
            "|---|---|---|",
            f"| BeadStore sync of the 2,669-record export: trigger -> new lastSync in `get` "
            f"(median / max of {sync['runs']}) | {sync['median_ms']} ms / {sync['max_ms']} ms | < 1 s |",
            f"| of which the reader (median of {sync['reader_runs']}) | {sync['reader_median_ms']} ms | |",
            f"| convoy {convoy['beads']} beads at parallelism {convoy['parallelism']}, "
            f"{convoy['agent_work_s']:g} s agent: wall time | "
            f"{convoy['wall_s']} s ({convoy['beads_per_minute']} beads/min; ideal {convoy['ideal_wall_s']} s) | "
            "completes |",
            f"| most agents running at once | {convoy['max_agents_at_once']} | <= {convoy['parallelism']} |",
            f"| polecat Succeeded -> convoy status shows it (p50 / max of {follows['samples']}) | "
            f"{follows['p50']} ms / {follows['max']} ms | < 1 s |",
        ]
    )


async def main(beads: int, parallelism: int, agent_seconds: float) -> dict[str, Any]:
    reads = read_times()
    syncs, convoy = await run(beads, parallelism, agent_seconds)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "sync": {
            "runs": len(syncs),
            "median_ms": round(statistics.median(syncs) * 1000, 1),
            "max_ms": round(max(syncs) * 1000, 1),
            "reader_runs": len(reads),
            "reader_median_ms": round(statistics.median(reads) * 1000, 1),
        },
        "convoy": convoy,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--beads", type=int, default=200)
    parser.add_argument("--parallelism", type=int, default=20)
    parser.add_argument("--agent-seconds", type=float, default=1.0, help="how long each agent works")
    options = parser.parse_args()
    report(RESULTS, asyncio.run(main(options.beads, options.parallelism, options.agent_seconds)), table)
