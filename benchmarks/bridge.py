"""The Kubernetes bridge: resources created -> workflows started (per second), and status latency,
with one bridge and with two (one active, one standing by); with two, how long the standby
takes to act once the active one is SIGKILLed.

The API server is the test suite's fake (no real one can run here); Temporal
(dev server with its SQLite file), the worker and `gastown bridge` are real
processes, as `gastown up` and a cluster would run them.

The CPU seconds each process spends on the burst say which one bounds it; py-spy
samples the bridge while one bridge takes the burst (results/bridge-profile.txt,
folded stacks), unless `--no-profile`.

    .venv/bin/python -m benchmarks.bridge [--resources 1000] [--bridges 1 2] [--no-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from benchmarks.polecat import percentile
from benchmarks.profiling import hot_frames, hot_frames_table, profiled
from benchmarks.runtime import embedded, report
from tests.fake_apiserver import FakeApiServer
from tests.helpers import GASTOWN

RESULTS = Path(__file__).parent / "results" / "bridge.json"
PROFILE = RESULTS.with_name("bridge-profile.txt")


def polecat(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": {"rig": "bench", "desiredState": "Idle"},
    }


def cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """User and system CPU seconds each process has spent so far."""
    spent = {}
    for name, pid in pids.items():
        if pid is not None:
            times = psutil.Process(pid).cpu_times()
            spent[name] = times.user + times.system
    return spent


async def burst(count: int, bridges: int, profile: Path | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gastown-bridge-bench-"))
    api = FakeApiServer()
    await api.start()
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(api.kubeconfig()))
    os.environ["KUBECONFIG"] = str(kubeconfig)  # the worker started by `up` inherits it
    try:
        async with embedded(work, KUBECONFIG=str(kubeconfig)) as (runtime, reconciler):
            client = reconciler.client
            env = {**os.environ, **runtime.worker_env()}
            started_bridges = []
            for n in range(bridges):  # the first acts; the others, younger, stand by
                with (work / f"bridge-{n}.log").open("wb") as log:
                    started_bridges.append(
                        subprocess.Popen([GASTOWN, "bridge"], env=env, stdout=log, stderr=subprocess.STDOUT)
                    )
                while api.watches_started.get("polecats", 0) == 0:
                    await asyncio.sleep(0.05)
            try:
                rigs = api._type("gastown.gastown.io", "v1alpha1", "rigs")
                api._create(rigs, None, {"metadata": {"name": "bench"}, "spec": {"localPath": str(work)}})
                while not any(r.get("status", {}).get("phase") for r in api.objects("rigs")):
                    await asyncio.sleep(0.05)

                polecats = api._type("gastown.gastown.io", "v1alpha1", "polecats")
                created: dict[str, float] = {}
                seen: dict[str, float] = {}
                pids = {
                    "bridge": started_bridges[0].pid,
                    "worker": runtime.worker.pid(),
                    "dev server": runtime.server.pid(),
                    "fake API server and this benchmark": os.getpid(),
                }
                before = cpu_seconds(pids)
                started = time.monotonic()
                async with profiled(started_bridges[0].pid, profile):
                    for i in range(count):
                        name = f"pc-{i:04d}"
                        created[name] = time.monotonic()
                        api._create(polecats, "default", polecat(name))
                        await asyncio.sleep(0)  # let the bridge's watch stream the change
                    while len(seen) < count:
                        now = time.monotonic()
                        for obj in api.objects("polecats", "default"):
                            name = obj["metadata"]["name"]
                            if name not in seen and obj.get("status", {}).get("phase") == "Idle":
                                seen[name] = now
                        await asyncio.sleep(0.01)
                all_status = time.monotonic() - started
                spent = {
                    name: round(seconds - before[name], 1) for name, seconds in cpu_seconds(pids).items()
                }
                query = "GastownKind = 'Polecat' AND ExecutionStatus = 'Running'"
                workflows = (await client.count_workflows(query)).count
                single = []  # one change at a time, on a quiet system: what a user waits for
                for i in range(20):
                    name = f"single-{i:02d}"
                    begin = time.monotonic()
                    api._create(polecats, "default", polecat(name))
                    while api.objects("polecats", "default") and not any(
                        o["metadata"]["name"] == name and o.get("status", {}).get("phase") == "Idle"
                        for o in api.objects("polecats", "default")
                    ):
                        await asyncio.sleep(0.005)
                    single.append(time.monotonic() - begin)
                takeover = await take_over(api, started_bridges) if bridges > 1 else None
            finally:
                for bridge in started_bridges:
                    bridge.terminate()
                    # Not blocking the loop: the fake API server runs on it, and a peering bridge's
                    # last request (leaving the peering) must be answered.
                    await asyncio.to_thread(bridge.wait, 30)
    finally:
        await api.stop()
    latencies = [seen[name] - created[name] for name in created]
    return {
        "bridges": bridges,
        "takeover_seconds": takeover,
        "resources": count,
        "workflows_running": workflows,
        "created_to_status_seconds": round(all_status, 2),
        "cpu_seconds_of_the_burst": spent,
        **({"bridge_profile": hot_frames(profile)} if profile else {}),
        "resources_per_second": round(count / all_status, 1),
        "status_latency_in_burst_ms": {
            "p50": round(statistics.median(latencies) * 1000),
            "p95": round(percentile(latencies, 0.95) * 1000),
            "max": round(max(latencies) * 1000),
        },
        "status_latency_single_ms": {
            "p50": round(statistics.median(single) * 1000),
            "p95": round(percentile(single, 0.95) * 1000),
            "max": round(max(single) * 1000),
        },
        "note": "a resource counts once its workflow has run and written status.phase Idle back to the CR",
    }


async def take_over(api: FakeApiServer, bridges: list[subprocess.Popen[bytes]]) -> float:
    """SIGKILL the active bridge, create one Polecat: seconds until its status is on its CR."""
    bridges[0].kill()
    await asyncio.to_thread(bridges[0].wait)
    polecats = api._type("gastown.gastown.io", "v1alpha1", "polecats")
    begin = time.monotonic()
    api._create(polecats, "default", polecat("after-takeover"))
    while not any(
        o["metadata"]["name"] == "after-takeover" and o.get("status", {}).get("phase") == "Idle"
        for o in api.objects("polecats", "default")
    ):
        await asyncio.sleep(0.05)
    return round(time.monotonic() - begin, 1)


async def main(count: int, bridges: list[int], profile: bool) -> dict[str, Any]:
    return {
        "runs": [await burst(count, each, PROFILE if profile and each == 1 else None) for each in bridges]
    }


def table(result: dict[str, Any]) -> str:
    lines = ["| metric | value | goal |", "|---|---|---|"]
    for run in result["runs"]:
        burst, single = run["status_latency_in_burst_ms"], run["status_latency_single_ms"]
        bridges = "one bridge" if run["bridges"] == 1 else f"{run['bridges']} bridges, one active"
        lines += [
            f"| {bridges}: {run['resources']} resources created through the fake API server -> each "
            f"workflow's status on its CR | {run['created_to_status_seconds']} s "
            f"({run['resources_per_second']}/s) | |",
            f"| {bridges}: one resource's status, in that burst (p50 / p95 / max) | {burst['p50']} / "
            f"{burst['p95']} / {burst['max']} ms | |",
            f"| {bridges}: one resource alone (p50 / p95 / max) | {single['p50']} / {single['p95']} / "
            f"{single['max']} ms | < 1 s |",
        ]
        spent = ", ".join(f"{name} {seconds}" for name, seconds in run["cpu_seconds_of_the_burst"].items())
        lines.append(f"| {bridges}: CPU seconds of the burst | {spent} | |")
        if run["takeover_seconds"] is not None:
            lines.append(
                f"| {bridges}: active SIGKILLed -> a new resource's status on its CR | "
                f"{run['takeover_seconds']} s | 15 s keep-alive + resuming every resource |"
            )
    for run in result["runs"]:
        if "bridge_profile" in run:
            title = f"Where the bridge's time went in the burst of {run['resources']} (py-spy):"
            lines += hot_frames_table(title, run["bridge_profile"])
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--bridges", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-profile", action="store_true", help="no py-spy on the bridge")
    options = parser.parse_args()
    report(RESULTS, asyncio.run(main(options.resources, options.bridges, not options.no_profile)), table)
