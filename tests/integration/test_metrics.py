"""Prometheus metrics of the worker and the board: the Temporal SDK's own, served on `--metrics`."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import Polecat, Refinery
from tests.helpers import (
    GASTOWN,
    GitRig,
    parsed,
    polecat_manifest,
    reach,
    refinery_manifest,
    rig,
    rig_manifest,
    terminate_running,
    wait_until,
    worker_env,
)
from tests.integration.test_agents import anthropic_api, commit, counted, succeeds
from tests.model_server import ModelServer
from worker.ports import free_port


@pytest.fixture
async def served(settings: Settings, client: Client) -> AsyncIterator[dict[str, str]]:
    """`gastown worker --metrics` and `gastown board --metrics` for the test's queue: their URLs.
    Its workflows are terminated after (workflow ids, such as a polecat's, are the server's)."""
    env = worker_env(settings.temporal_address, settings.task_queue, settings.home, settings.tmux_socket)
    urls, processes = {}, []
    for command, extra in (("worker", []), ("board", ["--address", f"127.0.0.1:{free_port()}"])):
        port = free_port()
        processes.append(
            await asyncio.create_subprocess_exec(
                GASTOWN, command, "--metrics", f"127.0.0.1:{port}", *extra, env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
        )  # fmt: skip
        urls[command] = f"http://127.0.0.1:{port}/metrics"
    yield urls
    for process in processes:
        process.send_signal(signal.SIGTERM)
        await process.wait()
    await terminate_running(client, settings.task_queue)


def scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


async def test_worker_and_board_serve_the_sdks_metrics(served: dict[str, str], settings: Settings) -> None:
    """Each serves the SDK's runtime metrics in Prometheus's text format: the worker its pollers and
    task slots on the test's queue, the board its client's requests to Temporal."""

    async def worker_metrics() -> str | None:
        text = await asyncio.to_thread(scrape, served["worker"])
        return (
            text if f'task_queue="{settings.task_queue}"' in text and "temporal_num_pollers" in text else None
        )

    text = await wait_until(worker_metrics, "the worker's metrics", 60)
    assert "# TYPE temporal_worker_task_slots_available gauge" in text

    async def board_metrics() -> str | None:
        text = await asyncio.to_thread(scrape, served["board"])
        return text if "temporal_request_total" in text else None

    await wait_until(board_metrics, "the board's client metrics", 60)


async def test_a_polecats_start_and_phase_are_counted(
    served: dict[str, str], reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """A polecat that runs: the worker counts its agent's start (by rig, agent and mode, never by
    polecat), and the board's gauge has it by phase and rig."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(parsed(Polecat, polecat_manifest("nux", rig_name, "--commit", "n.txt=n")))
    await reach(reconciler, Polecat, "nux", "Succeeded", timeout=60)

    started = 'gastown_polecat_starts_total{activity_type="tmux.start_agent",agent="custom",mode="local",'

    async def counted() -> str | None:
        text = await asyncio.to_thread(scrape, served["worker"])
        line = next((line for line in text.splitlines() if line.startswith(started) and rig_name in line), "")
        return line or None

    assert (await wait_until(counted, "the start counted", 60)).endswith(" 1")

    async def gauged() -> str | None:
        text = await asyncio.to_thread(scrape, served["board"])
        wanted = f'gastown_polecats{{phase="Succeeded",rig="{rig_name}"'
        return next((line for line in text.splitlines() if line.startswith(wanted)), None)

    assert (await wait_until(gauged, "the board's gauge", 60)).endswith(" 1")
    text = await asyncio.to_thread(scrape, served["worker"])
    assert "nux" not in text  # no polecat names as labels
    runs = [line for line in text.splitlines() if line.startswith("gastown_agent_run_seconds_count{")]
    assert any(
        f'rig="{rig_name}"' in line and 'outcome="Succeeded"' in line and line.endswith(" 1") for line in runs
    )
    buckets = [line for line in text.splitlines() if line.startswith("gastown_agent_run_seconds_bucket{")]
    assert any(f'rig="{rig_name}"' in line and 'le="14400"' in line for line in buckets)  # hours, not 10 s


async def test_a_merge_is_counted_with_its_latency(
    served: dict[str, str], reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """The worker counts each refinery outcome by refinery and outcome, and a merge's time from its
    branch queued to landed."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(parsed(Refinery, refinery_manifest("refinery", rig_name, autoMerge=True)))
    await reconciler.apply(parsed(Polecat, polecat_manifest("dag", rig_name, "--commit", "d.txt=d")))

    async def merged() -> str | None:
        text = await asyncio.to_thread(scrape, served["worker"])
        outcome = (
            'gastown_refinery_outcomes_total{namespace="default",outcome="Merged",refinery="default/refinery"'
        )
        return text if any(line.startswith(outcome) for line in text.splitlines()) else None

    text = await wait_until(merged, "the merge counted", 90)
    assert any(line.startswith("gastown_merge_latency_seconds_count{") for line in text.splitlines())


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples in a scrape whose labels include `labels`."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(label in line for label in wanted)
    )


@pytest.fixture
async def anthropic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[ModelServer]:
    async with anthropic_api(ModelServer([commit("claude")]), monkeypatch, tmp_path) as server:
        yield server


async def test_a_local_agents_tokens_and_spend_are_counted_by_provider_and_model(
    anthropic: ModelServer,  # first: the worker `served` starts takes this model server's address
    served: dict[str, str],
    reconciler: Reconciler,
    settings: Settings,
    git_rig: GitRig,
    rig_name: str,
) -> None:
    """claude-code's requests go through the worker's gateway, which counts each answer: the
    worker's tokens by provider, model and type, its requests and its spend are what the polecat's
    status says it used."""
    model = "claude-sonnet-4-5-20250929"
    done = await succeeds(reconciler, settings, git_rig, rig_name, "nux", "claude-code", model=model)
    usage = counted(done, anthropic)
    text = await asyncio.to_thread(scrape, served["worker"])
    labels = {"provider": "anthropic", "model": model}
    for kind in ("input", "output", "cache_read", "cache_write"):
        assert sample(text, "gastown_model_tokens_total", type=kind, **labels) == getattr(
            usage, f"{kind}_tokens"
        )
    assert sample(text, "gastown_model_requests_total", **labels) == usage.requests
    assert usage.cost_usd is not None
    assert sample(text, "gastown_model_request_cost_dollars_sum", **labels) == pytest.approx(usage.cost_usd)
