"""A real Prometheus (Debian's package) scrapes the worker, the bridge and the board while a small
convoy runs through kubectl, and what it stored agrees with what `gastown get` says.

kubectl applies a Rig, a Refinery and a two-bead Convoy to the fake API server (the one stand-in);
`gastown bridge`, `gastown worker` and `gastown board` run as processes with `--metrics`, and
Prometheus scrapes them every second. Then Prometheus's HTTP API is asked for the merged count (the
worker's refinery outcomes), the polecats by phase (the board's gauge of the town) and the
bridge's handler latency.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from client.settings import Settings
from tests.fake_apiserver import FakeApiServer
from tests.helpers import (
    GASTOWN,
    REPO_ROOT,
    GitRig,
    convoy_manifest,
    kubectl_apply,
    kubectl_get,
    refinery_manifest,
    rig_manifest,
    terminate_running,
    wait_until,
    worker_env,
)
from tests.integration.conftest import accepts
from worker.ports import free_port

DASHBOARD = json.loads((REPO_ROOT / "deploy" / "monitoring" / "grafana-dashboard.json").read_text())
# Panels of what this run does not do: no Witness, no model traffic, maybe no failure.
NOT_IN_THIS_RUN = {
    "Witness alerts by type",
    "Tokens per minute, by model (local agents)",
    "Spend per hour, by model (local agents)",
    "Bridge handler errors per second",
    "Activity failures per second, by type (SDK)",
}


class Monitored:
    """The processes under test and the Prometheus that scrapes them."""

    def __init__(
        self,
        api: FakeApiServer,
        settings: Settings,
        kubeconfig: Path,
        prometheus: str,
        processes: dict[str, asyncio.subprocess.Process],
        log: Path,
    ) -> None:
        self.api, self.settings, self.kubeconfig, self.prometheus = api, settings, kubeconfig, prometheus
        self.processes, self.log = processes, log

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector, from Prometheus's HTTP API."""
        url = f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def state(self) -> str:
        """What to say when a wait fails: each target's health and last scrape error, each process's
        exit code, and the end of their log."""
        with urllib.request.urlopen(f"{self.prometheus}/api/v1/targets", timeout=5) as answer:
            targets = json.load(answer)["data"]["activeTargets"]
        health = [(t["labels"]["job"], t["health"], t["lastError"]) for t in targets]
        exits = {name: process.returncode for name, process in self.processes.items()}
        return f"targets {health}, exit codes {exits}, log: {self.log.read_text()[-3000:]}"

    async def gastown_get(self, kind: str) -> dict[str, Any]:
        """`gastown get KIND -o json`, as a user runs it."""
        env = worker_env(self.settings.temporal_address, self.settings.task_queue, self.settings.home, "")
        process = await asyncio.create_subprocess_exec(
            GASTOWN, "get", kind, "-o", "json", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        return dict(json.loads(out))


@pytest.fixture
async def town(settings: Settings, client: Client, tmp_path: Path) -> AsyncIterator[Monitored]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is installed by .ci/run"
    api = FakeApiServer()
    await api.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(api.kubeconfig()))
    env = {
        **worker_env(settings.temporal_address, settings.task_queue, settings.home, settings.tmux_socket),
        "KUBECONFIG": str(kubeconfig),
    }
    targets: dict[str, str] = {}
    processes: dict[str, asyncio.subprocess.Process] = {}
    log = (tmp_path / "processes.log").open("ab")
    for command, *extra in (
        ["worker"],
        ["bridge", "--standalone"],
        ["board", "--address", f"127.0.0.1:{free_port()}"],
    ):
        targets[command] = f"127.0.0.1:{free_port()}"
        processes[command] = await asyncio.create_subprocess_exec(
            GASTOWN, command, "--metrics", targets[command], *extra, env=env, stdout=log, stderr=log
        )
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {"job_name": f"gastown-{name}", "static_configs": [{"targets": [target]}]}
            for name, target in targets.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = await asyncio.create_subprocess_exec(
        binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", stdout=log, stderr=log,
    )  # fmt: skip
    try:
        await wait_until(lambda: accepts(port), "Prometheus to listen", 60)
        await wait_until(lambda: api.watching_every_kind(), "the bridge to watch every kind", 60)
        yield Monitored(api, settings, kubeconfig, f"http://127.0.0.1:{port}", processes, Path(log.name))
    finally:
        for process in [prometheus, *processes.values()]:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in [prometheus, *processes.values()]:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
        await api.stop()
        await terminate_running(client, settings.task_queue)


def by(label: str, result: list[dict[str, Any]]) -> dict[str, float]:
    return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in result}


async def test_prometheus_scrapes_a_convoys_merges_and_phases_as_gastown_get_says(
    town: Monitored, git_rig: GitRig, rig_name: str
) -> None:
    """A two-bead convoy whose branches a Refinery merges: Prometheus holds the worker's merged
    count, the board's polecats by phase and the bridge's handler latency, equal to what `gastown
    get` shows; no series carries a polecat's name."""
    await kubectl_apply(
        town.kubeconfig,
        rig_manifest(rig_name, git_rig),
        refinery_manifest("refinery", rig_name, autoMerge=True),
        convoy_manifest("wave", rig_name, ["gt-1", "gt-2"], "--commit", "{bead}.txt=done", parallelism=2),
    )

    seen: list[Any] = []

    async def both_merged() -> dict[str, Any] | None:
        found = await kubectl_get(town.kubeconfig, "refineries", "refinery")
        seen[:] = [(found or {}).get("status"), town.api.objects("polecats")]
        return found if (found or {}).get("status", {}).get("merged") == 2 else None

    try:
        await wait_until(both_merged, "the refinery to merge both branches", 120)
    except AssertionError as error:
        raise AssertionError(f"{error}; the refinery and polecats were {seen}") from None
    refineries = (await town.gastown_get("refineries"))["items"]
    polecats = (await town.gastown_get("polecats"))["items"]
    merged = sum(item["status"]["merged"] for item in refineries)
    phases: dict[str, float] = {}
    for item in polecats:
        phases[item["status"]["phase"]] = phases.get(item["status"]["phase"], 0) + 1

    def scraped_merges() -> float | None:
        found = by("", town.query('sum(gastown_refinery_outcomes_total{outcome="Merged"})'))
        return found.get("") if found.get("") == merged else None

    assert await wait_until(scraped_merges, "Prometheus to hold the merged count", 30) == merged == 2

    def scraped_phases() -> dict[str, float] | None:
        found = by("phase", town.query(f'sum by (phase) (gastown_polecats{{rig="{rig_name}"}})'))
        return found if {k: v for k, v in found.items() if v} == phases else None

    await wait_until(scraped_phases, f"Prometheus's polecats by phase to be {phases}", 30)

    def scraped_handlers() -> set[str] | None:
        found = by(
            "kind", town.query('sum by (kind) (gastown_bridge_handler_seconds_count{handler="apply"})')
        )
        return set(found) if {"Rig", "Refinery", "Convoy", "Polecat"} <= set(found) else None

    try:
        await wait_until(scraped_handlers, "Prometheus to hold the bridge's handler runs of each kind", 30)
    except AssertionError as error:
        raise AssertionError(f"{error}; {town.state()}") from None
    assert town.query("temporal_worker_task_slots_available"), "the SDK's own metrics are there too"

    # Every query of the Grafana dashboard is one Prometheus takes, and those of this run get data
    # (a rate, once two scrapes have the series).
    def without_data() -> set[str] | None:
        answered = {
            t["expr"]: town.query(t["expr"]) for panel in DASHBOARD["panels"] for t in panel["targets"]
        }
        empty = {
            p["title"] for p in DASHBOARD["panels"] if not any(answered[t["expr"]] for t in p["targets"])
        }
        return empty if empty <= NOT_IN_THIS_RUN else None

    await wait_until(without_data, "every panel of this run's work to have data", 30)
    names = {item["metadata"]["name"] for item in polecats}
    series = town.query('{__name__=~"gastown_.+"}')
    assert not [s for s in series if names & set(s["metric"].values())], "a polecat's name is a label"
