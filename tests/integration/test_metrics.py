"""Prometheus metrics of the worker and the board: the Temporal SDK's own, served on `--metrics`."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from collections.abc import AsyncIterator

import pytest

from client.settings import Settings
from tests.helpers import GASTOWN, wait_until, worker_env
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
