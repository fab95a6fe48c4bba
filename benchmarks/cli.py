"""How long the `gastown` CLI takes, as a user runs it: a new process per command.

A town of 20 working polecats (the scripted agent, waiting) on the embedded
topology; each read command runs `--runs` times after two warm-up runs, and
the figure is its wall time from exec to exit. `python -c pass` is the floor
of any Python command here. Prints a markdown table and writes
benchmarks/results/cli.json.

    .venv/bin/python -m benchmarks.cli [--runs 20] [--polecats 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.runtime import embedded, report
from crds import Polecat, parse_resource
from tests.helpers import GASTOWN, make_git_rig, polecat_manifest, rig_manifest, wait_until
from worker.embedded import EmbeddedRuntime

RESULTS = Path(__file__).parent / "results" / "cli.json"
READS = [
    ["get", "polecats"],
    ["get", "polecats", "-o", "json"],
    ["get", "polecat", "cat-1"],
    ["get", "rigs"],
    ["describe", "polecat", "cat-1"],
    ["usage"],
]
GOAL = "<= 200 ms"


def timed(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall seconds of `runs` runs of `command` (after two warm-up runs), each of which must succeed."""
    times = []
    for index in range(runs + 2):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        if index >= 2:
            times.append(time.perf_counter() - started)
    return times


async def main(runs: int, polecats: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gastown-bench-"))
    async with embedded(work) as (runtime, reconciler):
        git_rig = make_git_rig(work / "rig")
        await reconciler.apply(parse_resource(rig_manifest("bench", git_rig)))
        gate = work / "gate"
        for index in range(1, polecats + 1):
            manifest = polecat_manifest(f"cat-{index}", "bench", "--wait-for", str(gate))
            await reconciler.apply(parse_resource(manifest))

        async def all_working() -> bool:
            found = await reconciler.list(Polecat, "default")
            return sum(1 for p in found if p.status and p.status.phase == "Working") == polecats

        await wait_until(all_working, f"{polecats} polecats to work", 120)
        env = {**os.environ, **EmbeddedRuntime(runtime.settings).worker_env()}
        rows = [("python -c pass (the floor)", timed([sys.executable, "-c", "pass"], env, runs))]
        rows += [(f"gastown {' '.join(read)}", timed([GASTOWN, *read], env, runs)) for read in READS]
        gate.touch()
    return {
        "runs": runs,
        "polecats": polecats,
        "commands": [
            {
                "command": label,
                "p50_ms": round(statistics.median(times) * 1000, 1),
                "max_ms": round(max(times) * 1000, 1),
                "goal": "" if label.startswith("python") else GOAL,
            }
            for label, times in rows
        ],
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['polecats']} working polecats; {result['runs']} runs of each, new process each time.",
        "",
        "| command | p50 ms | max ms | goal |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{r['command']}` | {r['p50_ms']} | {r['max_ms']} | {r['goal']} |" for r in result["commands"]
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--polecats", type=int, default=20)
    options = parser.parse_args()
    report(RESULTS, asyncio.run(main(options.runs, options.polecats)), table)
