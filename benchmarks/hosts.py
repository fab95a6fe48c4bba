"""Local polecats on one host against the same number split over two hosts: starts/s and the
time until all are Working.

The embedded runtime's worker is one host; the second is a worker of its own in a mount
namespace (tests/hosts.py), with its own rig. Both share the one dev server and, here, the
machine's two cores: the ratio says what a second host adds when the server, not the worker,
bounds the start rate. The agent is the scale benchmark's: it waits on a lock the benchmark
holds, so all work at once.

    .venv/bin/python -m benchmarks.hosts [--polecats 500]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.runtime import embedded, report
from benchmarks.scale import IN_FLIGHT, cpu_seconds, held, manifest, wait_for
from crds import parse_resource
from tests.helpers import make_git_rig, rig_manifest
from tests.hosts import Host

RESULTS = Path(__file__).parent / "results" / "hosts.json"


async def main(polecats: int) -> dict[str, Any]:
    # Each case on a runtime of its own: a later run would meet a database holding the earlier
    # run's workflows, and start slower for that alone (seen: 20-60 %).
    return {"runs": [await one_case(polecats, hosts) for hosts in (1, 2)]}


async def one_case(polecats: int, hosts: int) -> dict[str, Any]:
    """A fresh runtime, a second host beside it (polling even when it has no rig's work)."""
    work = Path(tempfile.mkdtemp(prefix="gastown-hosts-bench-"))
    try:
        async with embedded(work) as (runtime, reconciler):
            settings = runtime.settings
            second = Host(
                name="bench-b",
                private=work / "hosts" / "bench-b",
                mountpoint=work / "here",
                temporal_address=settings.temporal_address,
                task_queue=settings.task_queue,
                log=work / "bench-b.log",
            )
            second.start()
            try:
                rigs = {
                    settings.host: make_git_rig(work / "rig-a"),
                    "bench-b": make_git_rig(second.private / "rig"),
                }
                for host, made in rigs.items():
                    document = rig_manifest(f"rig-{host}", made, host=host)
                    if host == "bench-b":
                        document["spec"]["localPath"] = str(second.mountpoint / "rig" / "checkout")
                    await reconciler.apply(parse_resource(document))
                assert second.worker.process is not None and runtime.worker.pid() and runtime.server.pid()
                processes = {
                    "dev server": psutil.Process(runtime.server.pid()),
                    "worker A": psutil.Process(runtime.worker.pid()),
                    "worker B": psutil.Process(second.worker.process.pid),  # unshare execs: the same pid
                }
                return await one_run(reconciler, work, polecats, list(rigs)[:hosts], processes)
            finally:
                second.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def one_run(
    reconciler: Any, work: Path, polecats: int, hosts: list[str], processes: dict[str, psutil.Process]
) -> dict[str, Any]:
    """`polecats` applied at once, shared evenly by the rigs of `hosts`; until all are Working,
    with the CPU seconds each process spent meanwhile."""
    namespace, gate = f"hosts-{len(hosts)}", work / f"gate-{len(hosts)}"
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def apply(index: int) -> None:
        rig = f"rig-{hosts[index % len(hosts)]}"
        async with limit:
            await reconciler.apply(parse_resource(manifest(f"p{index:04d}", namespace, gate, rig=rig)))

    before = {name: cpu_seconds(process) for name, process in processes.items()}
    with held(gate):
        started = time.monotonic()
        await asyncio.gather(*(apply(i) for i in range(polecats)))
        await wait_for(reconciler, namespace, "Working", polecats, timeout=60 + polecats)
        all_working = time.monotonic() - started
        cpu = {name: round(cpu_seconds(process) - before[name], 1) for name, process in processes.items()}
    await wait_for(reconciler, namespace, "Succeeded", polecats, timeout=60 + polecats)
    return {
        "hosts": len(hosts),
        "polecats": polecats,
        "all_working_seconds": round(all_working, 1),
        "starts_per_second": round(polecats / all_working, 1),
        "cpu_seconds_until_all_working": cpu,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| local polecats at once | hosts | all Working after | starts/s | CPU s meanwhile: dev server, worker A, worker B |",
        "|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        each = run["polecats"] // run["hosts"]
        where = "one host" if run["hosts"] == 1 else f"{each} on each of {run['hosts']} hosts"
        cpu = run["cpu_seconds_until_all_working"]
        lines.append(
            f"| {run['polecats']} | {where} | {run['all_working_seconds']} s | {run['starts_per_second']} | "
            f"{cpu['dev server']}, {cpu['worker A']}, {cpu['worker B']} |"
        )
    one, two = result["runs"]
    lines.append(
        f"\nTwo hosts / one host, starts/s: {two['starts_per_second'] / one['starts_per_second']:.2f}x"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--polecats", type=int, default=500)
    report(RESULTS, asyncio.run(main(parser.parse_args().polecats)), table)
