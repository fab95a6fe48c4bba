"""What the model gateway adds to a model request, side by side with a direct request.

The provider is tests/model_server.py (a streamed Messages answer of six
events, or one JSON answer), in a process of its own; the gateway runs in a
process of its own too, as a worker serves it (`worker.gateway.serve_gateway`).
The client sends requests one at a time, alternating direct and through the
gateway, and times each from sending to the last byte. The difference of the
medians is what the gateway costs a request: relaying, reading the usage,
appending the ledger line.

Prints a markdown table and writes benchmarks/results/gateway.json.

    .venv/bin/python -m benchmarks.gateway [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.runtime import report
from launch.gateway import PLACEHOLDER_KEY, agent_directory, host_secret, mint
from tests.helpers import free_port

RESULTS = Path(__file__).parent / "results" / "gateway.json"
AGENT = "default/gt-default-bench-00000001"
SERVE_MODEL = """
import asyncio, sys
from tests.model_server import ModelServer, serve
async def main():
    async for server in serve(ModelServer([])):
        print(server.url, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""
SERVE_GATEWAY = """
import asyncio, sys
from pathlib import Path
from worker.gateway import serve_gateway
async def main():
    environ = {"ANTHROPIC_BASE_URL": sys.argv[2], "ANTHROPIC_API_KEY": "sk-bench"}
    async with serve_gateway(Path(sys.argv[1]), environ, int(sys.argv[3])) as gateway:
        print(gateway.url, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


def serve(code: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`code` in a process of its own; the URL it prints once it serves."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


async def timed(session: aiohttp.ClientSession, url: str, stream: bool) -> float:
    body = {"model": "claude-bench", "stream": stream, "max_tokens": 64, "messages": []}
    headers = {"x-api-key": PLACEHOLDER_KEY, "anthropic-version": "2023-06-01"}
    started = time.perf_counter()
    async with session.post(f"{url}/v1/messages", json=body, headers=headers) as answer:
        await answer.read()
        assert answer.status == 200, answer.status
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(requests: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="gastown-bench-gateway-"))
    agent_directory(home, AGENT).mkdir(parents=True)
    model, model_url = serve(SERVE_MODEL)
    gateway, gateway_url = serve(SERVE_GATEWAY, str(home), model_url, str(free_port()))
    through = f"{gateway_url}/{mint(host_secret(home), AGENT)}/anthropic"
    samples: dict[tuple[str, bool], list[float]] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for stream in (True, False):
                for url in (model_url, through):  # warm-up: connections, imports
                    await timed(session, url, stream)
                for _ in range(requests):
                    for route, url in (("direct", model_url), ("gateway", through)):
                        samples.setdefault((route, stream), []).append(await timed(session, url, stream))
    finally:
        for process in (gateway, model):
            process.terminate()
            process.wait()
    rows = []
    for stream in (True, False):
        direct, via = samples[("direct", stream)], samples[("gateway", stream)]
        rows.append(
            {
                "answer": "streamed (SSE)" if stream else "whole (JSON)",
                "direct_p50_ms": round(statistics.median(direct) * 1000, 2),
                "direct_p95_ms": round(percentile(direct, 0.95) * 1000, 2),
                "gateway_p50_ms": round(statistics.median(via) * 1000, 2),
                "gateway_p95_ms": round(percentile(via, 0.95) * 1000, 2),
                "added_p50_ms": round((statistics.median(via) - statistics.median(direct)) * 1000, 2),
                "added_p95_ms": round((percentile(via, 0.95) - percentile(direct, 0.95)) * 1000, 2),
                "requests": len(via),
            }
        )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| answer | direct p50 / p95 ms | through the gateway p50 / p95 ms | added p50 / p95 ms | requests |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['answer']} | {row['direct_p50_ms']} / {row['direct_p95_ms']} | "
            f"{row['gateway_p50_ms']} / {row['gateway_p95_ms']} | "
            f"{row['added_p50_ms']} / {row['added_p95_ms']} | {row['requests']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per route and answer kind")
    options = parser.parse_args()
    report(RESULTS, asyncio.run(main(options.requests)), table)
