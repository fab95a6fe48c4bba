"""Every benchmark, one after another, and one table of their figures: `make bench`.

    .venv/bin/python -m benchmarks [--quick] [--only polecat witness ...]

Each runs in a process of its own, as `python -m benchmarks.<name>` (its own
runtime, its own results/<name>.json); then results/summary.json holds them
all and results/summary.md their tables, each figure beside its goal.
`--quick` runs each at a small size: a check that the suite works, not figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
# name -> (what it measures, the arguments of a quick run)
SUITE = {
    "cli": ("The CLI's read commands, a new process each", ["--runs", "3", "--polecats", "3"]),
    "polecat": ("Polecat latencies and history size", ["--samples", "3", "--long-run", "5"]),
    "scale": ("Many polecats at once: starts, memory, history", ["--sizes", "20"]),
    "hosts": ("Local polecats on one host against two", ["--polecats", "20"]),
    "bridge": (
        "The Kubernetes bridge, against the fake API server",
        ["--resources", "50", "--bridges", "1", "2"],
    ),
    "convoy": ("BeadStore sync and a convoy", ["--beads", "20", "--parallelism", "5"]),
    "refinery": ("The merge queue against a plain git loop", ["--branches", "10", "--repeats", "1"]),
    "witness": ("Witness detection latency and check time", ["--polecats", "20", "--latency-samples", "2"]),
    "gateway": ("What the model gateway adds to a model request", ["--requests", "30"]),
    "board": (
        "The town board: phase changes to the page, first load, CPU",
        ["--wave", "20", "--polecats", "50", "--cpu-seconds", "5"],
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, every one even when one fails; non-zero naming those that failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: does the suite run?")
    parser.add_argument("--only", nargs="+", choices=list(SUITE), default=list(SUITE))
    options = parser.parse_args(argv)
    summary: dict[str, object] = {}
    failed: list[str] = []
    sections = [
        "# Benchmarks",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')}{' (quick)' if options.quick else ''}.",
    ]
    for name in options.only:
        title, quick = SUITE[name]
        print(f"== {name}: {title}", flush=True)
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *(quick if options.quick else [])])
        if run.returncode != 0:
            print(f"benchmarks.{name} failed (exit {run.returncode})", file=sys.stderr, flush=True)
            failed.append(name)
            sections += ["", f"## {title} (`benchmarks/{name}.py`)", "", f"Failed (exit {run.returncode})."]
            continue
        result = json.loads((RESULTS / f"{name}.json").read_text())
        summary[name] = {"seconds": round(time.monotonic() - started, 1), "result": result}
        table = importlib.import_module(f"benchmarks.{name}").table(result)
        sections += ["", f"## {title} (`benchmarks/{name}.py`)", "", table]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps({**summary, "failed": failed}, indent=2))
    (RESULTS / "summary.md").write_text("\n".join(sections) + "\n")
    print(f"wrote {RESULTS / 'summary.json'} and {RESULTS / 'summary.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
