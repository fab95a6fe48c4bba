"""The town board, as `gastown up` serves it, in Debian's headless Chromium (Playwright).

- phase-change latency: polecats of one convoy-sized wave (100 by default; the
  scripted agent, each waiting for its own gate file) are Working on an open
  page; a gate is opened every `--gap` seconds (0.5: a convoy finishing two
  polecats a second) and the time runs from the agent's exit
  (its `--spans` end line) to the page's cell showing Succeeded, as a
  MutationObserver in the page records it. It covers the whole path a person
  waits on: the watcher sees the exit, the workflow publishes, visibility
  shows the memo, the board's next read (every second) pushes the change;
- first load with N working polecats (500 by default): the server's time to
  answer `GET /` (measured from this process, on localhost) and the page's size;
- the board process's CPU while those N polecats work and one page is open.

Prints a markdown table and writes benchmarks/results/board.json.

    .venv/bin/python -m benchmarks.board [--wave 100] [--gap 0.5] [--polecats 500] [--cpu-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from playwright.async_api import async_playwright

from benchmarks.runtime import embedded, report
from benchmarks.witness import apply_all, polecat, working
from crds import Polecat, Rig, parse_resource
from tests.helpers import SCRIPTED_AGENT, make_git_rig, rig_manifest, wait_until
from tests.integration.test_board import CHROMIUM, CHROMIUM_FLAGS

RESULTS = Path(__file__).parent / "results" / "board.json"
# Records, in the page, when each polecat's cell first shows Succeeded (epoch milliseconds).
WATCH_CELLS = """
window.__succeeded = {};
new MutationObserver(() => {
  for (const cell of document.querySelectorAll('.cell[data-phase="Succeeded"]')) {
    window.__succeeded[cell.dataset.key] ??= Date.now();
  }
}).observe(document.getElementById("polecats"), {childList: true, subtree: true, attributes: true});
"""


def agent_end(spans: Path) -> float:
    """When the scripted agent exited (epoch seconds), from its `--spans` file."""
    return next(float(line.split()[2]) for line in spans.read_text().splitlines() if line.startswith("end"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def main(wave: int, gap: float, count: int, cpu_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gastown-bench-board-") as scratch:
        work = Path(scratch)
        async with embedded(work) as (runtime, reconciler), async_playwright() as playwright:
            url = runtime.board_url
            assert url, "gastown up started no board"
            rig = parse_resource(rig_manifest("bench", make_git_rig(work / "rig")))
            assert isinstance(rig, Rig)
            await reconciler.apply(rig)
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
            )
            page = await browser.new_page()
            await page.goto(url)
            await page.evaluate(WATCH_CELLS)

            # Phase changes pushed to an open page, with a wave of polecats working.
            gates, spans = work / "gates", work / "spans"
            gates.mkdir()
            spans.mkdir()
            names = [f"w{n:03}" for n in range(wave)]
            agent = [sys.executable, str(SCRIPTED_AGENT)]
            await apply_all(
                reconciler,
                [
                    polecat(
                        name, "bench", [*agent, "--spans", str(spans / name), "--wait-for", str(gates / name)]
                    )
                    for name in names
                ],
            )
            await wait_until(lambda: working(reconciler, wave), f"{wave} polecats working", 600)
            for name in names:
                (gates / name).touch()
                await asyncio.sleep(gap)  # a stream of changes: one every `gap` seconds

            async def all_shown() -> bool:
                return len(await page.evaluate("window.__succeeded")) >= wave

            await wait_until(all_shown, "every cell to show Succeeded", 300)
            shown = await page.evaluate("window.__succeeded")
            latencies = [shown[f"default/{name}"] / 1000 - agent_end(spans / name) for name in names]
            for name in names:
                await reconciler.delete(Polecat, "default", name)

            # The first load, and the board's CPU, with `count` polecats working.
            await apply_all(
                reconciler, [polecat(f"p{n:04}", "bench", ["sleep", "86400"]) for n in range(count)]
            )
            await wait_until(lambda: working(reconciler, count), f"{count} polecats working", 1800)
            await asyncio.sleep(2)  # the board's reader has the whole town
            loads = []
            for _ in range(5):
                started = time.perf_counter()
                body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=60).read())
                loads.append(time.perf_counter() - started)
            board = psutil.Process(runtime.board.pid() or 0)
            await page.goto(url)
            before = board.cpu_times()
            await asyncio.sleep(cpu_seconds)
            after = board.cpu_times()
            cpu = (after.user + after.system - before.user - before.system) / cpu_seconds
            await browser.close()
    return {
        "machine": f"{platform.node()} ({psutil.cpu_count()} CPUs)",
        "wave": wave,
        "gap_seconds": gap,
        "phase_change_seconds": {
            "p50": statistics.median(latencies),
            "p95": percentile(latencies, 0.95),
            "samples": len(latencies),
        },
        "polecats": count,
        "first_load": {"p50_seconds": statistics.median(loads), "bytes": len(body)},
        "board_cpu_share": cpu,
    }


def table(result: dict[str, Any]) -> str:
    change, load = result["phase_change_seconds"], result["first_load"]
    return "\n".join(
        [
            f"Town board ({result['machine']})",
            "",
            "| what | figure |",
            "|---|---|",
            f"| agent exit -> page shows Succeeded, {result['wave']} polecats, one every "
            f"{result['gap_seconds']:g} s (p50 / p95) | "
            f"{change['p50']:.2f} s / {change['p95']:.2f} s ({change['samples']} samples) |",
            f"| first load, {result['polecats']} polecats working (server, p50 of 5) | "
            f"{load['p50_seconds'] * 1000:.0f} ms, {load['bytes'] / 1024:.0f} KiB |",
            f"| board CPU, {result['polecats']} working, one page open | {result['board_cpu_share'] * 100:.1f} % of a core |",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wave", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between two agents' ends")
    parser.add_argument("--polecats", type=int, default=500)
    parser.add_argument("--cpu-seconds", type=float, default=30.0)
    options = parser.parse_args()
    report(
        RESULTS, asyncio.run(main(options.wave, options.gap, options.polecats, options.cpu_seconds)), table
    )
