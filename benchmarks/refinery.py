"""How fast the Refinery lands branches, on the embedded topology with real git.

- queue vs a plain loop: N independent branches (each adds a file) merged
  into main of a bare remote, (a) by a plain git loop (fetch, merge --no-ff,
  push, delete the branch) and (b) through a Refinery (no checks, autoMerge),
  batchSize 1 and batchSize 8; each on its own copy of the same remote,
  medians of --repeats runs;
- checks: the same N branches with one 2-second required check, batchSize 1
  (one check per branch) and batchSize 8 (one check per batch).

Times run from the enqueue of all N (one update, as `gastown refinery enqueue NAME
BRANCH...` sends them) to the last merge visible in `gastown get`.
Prints a markdown table and writes benchmarks/results/refinery.json.

    .venv/bin/python -m benchmarks.refinery [--branches 50] [--check-seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from git import Repo

from benchmarks.runtime import embedded, report
from bridge.reconcile import Reconciler
from crds import Refinery, Rig, parse_resource
from tests.helpers import (
    GitRig,
    make_git_rig,
    python_check,
    reach,
    refinery_manifest,
    rig_manifest,
    wait_until,
)

RESULTS = Path(__file__).parent / "results" / "refinery.json"


def branches_repo(root: Path, count: int) -> GitRig:
    """A bare remote with `count` branches off main, each adding a file of its own."""
    rig = make_git_rig(root)
    for n in range(count):
        rig.push_branch(f"polecat/p{n:03}", {f"work/p{n:03}.txt": f"{n}\n"})
    return rig


def copy_of(rig: GitRig, root: Path) -> GitRig:
    """The same remote, copied (a checkout cloned from the copy)."""
    remote = root / "remote.git"
    shutil.copytree(rig.remote, remote)
    checkout = root / "checkout"
    repo = Repo.clone_from(remote, checkout)
    # The plain loop's merges are commits: an identity of their own, so a machine with no global
    # git identity (a fresh one) runs it too.
    with repo.config_writer() as config:
        config.set_value("user", "name", "Benchmark")
        config.set_value("user", "email", "benchmark@gastown.local")
    return GitRig(checkout=checkout, remote=remote)


def plain_loop(rig: GitRig, branches: list[str]) -> float:
    """What a person's script would do: per branch fetch, merge --no-ff, push main, delete the branch."""
    repo = Repo(rig.checkout)
    git = repo.git
    git.checkout("-q", "main")
    start = time.perf_counter()
    for branch in branches:
        git.fetch("-q", "origin", "main", branch)
        git.merge("-q", "--no-ff", "-m", f"Merge {branch} into main", f"origin/{branch}")
        git.push("-q", "origin", "main")
        git.push("-q", "origin", "--delete", branch)
    return time.perf_counter() - start


async def through_queue(
    reconciler: Reconciler, rig: GitRig, name: str, branches: list[str], **spec: Any
) -> float:
    """Enqueue every branch and wait until all are merged; seconds from the first enqueue."""
    await reconciler.apply(parse_resource(rig_manifest(name, rig)))
    await reach(reconciler, Rig, name, "Ready")
    refinery = parse_resource(refinery_manifest(name, name, autoMerge=True, **spec))
    await reconciler.apply(refinery)
    await reach(reconciler, Refinery, name, "Idle")
    handle = await reconciler.running(Refinery, "default", name)
    start = time.perf_counter()
    await handle.execute_update(
        "enqueue", [{"branch": branch} for branch in branches]
    )  # as `enqueue NAME B...`

    async def all_merged() -> bool:
        found = await reconciler.find(Refinery, "default", name)
        return bool(found and found.status and found.status.merged == len(branches))

    await wait_until(all_merged, f"{len(branches)} merged through {name}", timeout=1800)
    elapsed = time.perf_counter() - start
    assert Repo(rig.remote).git.log("--first-parent", "--format=%s", "main").count("Merge polecat/") == len(
        branches
    )
    return elapsed


async def run(count: int, check_seconds: float, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gastown-bench-") as scratch:
        work = Path(scratch)
        original = branches_repo(work / "original", count)
        branches = [f"polecat/p{n:03}" for n in range(count)]
        plain = [plain_loop(copy_of(original, work / f"plain{i}"), branches) for i in range(repeats)]
        check = python_check(f"import time; time.sleep({check_seconds})")
        queued: dict[int, list[float]] = {1: [], 8: []}
        checked: dict[int, float] = {}
        async with embedded(work) as (_, reconciler):
            for i in range(repeats):
                for size, samples in queued.items():
                    name = f"q{size}-{i}"
                    rig = copy_of(original, work / name)
                    samples.append(await through_queue(reconciler, rig, name, branches, batchSize=size))
            for size in (1, 8):
                name = f"c{size}"
                rig = copy_of(original, work / name)
                spec = {"batchSize": size, "requiredChecks": [check]}
                checked[size] = await through_queue(reconciler, rig, name, branches, **spec)
    loop = statistics.median(plain)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "branches": count,
        "repeats": repeats,
        "plain_loop_s": round(loop, 2),
        "plain_loop_samples_s": [round(x, 2) for x in plain],
        "queue_s": {str(size): round(statistics.median(x), 2) for size, x in queued.items()},
        "queue_samples_s": {str(size): [round(v, 2) for v in x] for size, x in queued.items()},
        "queue_over_plain": {str(size): round(statistics.median(x) / loop, 2) for size, x in queued.items()},
        "check_seconds": check_seconds,
        "checked_s": {str(size): round(seconds, 2) for size, seconds in checked.items()},
    }


def table(result: dict[str, Any]) -> str:
    n, plain = result["branches"], result["plain_loop_s"]
    queue, ratio, checked = result["queue_s"], result["queue_over_plain"], result["checked_s"]
    check = result["check_seconds"]
    return "\n".join(
        [
            "| metric | value | goal |",
            "|---|---|---|",
            f"| {n} branches, plain git loop (fetch, merge, push, delete; median of {result['repeats']}) "
            f"| {plain} s | |",
            f"| {n} branches through the queue, batchSize 1 | {queue['1']} s ({ratio['1']}x the loop) | <= 1.5x |",
            f"| {n} branches through the queue, batchSize 8 | {queue['8']} s ({ratio['8']}x the loop) | |",
            f"| {n} branches, {check:g} s check, batchSize 1 ({n} checks) | {checked['1']} s | |",
            f"| {n} branches, {check:g} s check, batchSize 8 | {checked['8']} s | a small fraction of the above |",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--branches", type=int, default=50)
    parser.add_argument("--check-seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the loop and the queue (medians)")
    options = parser.parse_args()
    report(RESULTS, asyncio.run(run(options.branches, options.check_seconds, options.repeats)), table)
