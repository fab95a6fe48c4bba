"""Prometheus metrics of the worker and the board: the Temporal SDK's own, served on `--metrics`."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from collections.abc import AsyncIterator

import pytest

from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import Polecat
from tests.helpers import (
    GASTOWN,
    GitRig,
    parsed,
    polecat_manifest,
    reach,
    rig,
    rig_manifest,
    wait_until,
    worker_env,
)
from worker.ports import free_port


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[dict[str, str]]:
    """`gastown worker --metrics` and `gastown board --metrics` for the test's queue: their URLs."""
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
    assert "nux" not in await asyncio.to_thread(scrape, served["worker"])  # no polecat names as labels
