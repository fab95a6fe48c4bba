"""The worker's model gateway: the home's port, and the server on it for the home's local agents.

Why the worker serves one (rather than reading each CLI's own report, or
running LiteLLM's proxy): it sees every request and answer of every agent,
whatever the CLI, so usage is exact and the same for all; it holds the
providers' keys, so no agent ever holds one; and it needs no database or
second service (LiteLLM's keys and budgets need PostgreSQL).

Each home has one gateway port, recorded in `gateway.json` the first time a
worker of the home serves it; every worker of the home binds that port with
SO_REUSEPORT, so an agent whose worker restarts keeps its gateway (the
kernel hands its connections to a worker of the home that is up). What a
request used goes to its polecat's ledger, a file in the home, so any
worker of the home can serve any of its agents.

The server itself (forwarding, budgets, holding through limits) is
`launch.gateway_server`, which a pod's entrypoint serves too.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp

from client.private_files import write_private
from launch.gateway import GatewayAccess
from launch.gateway_server import HOLD, IDENTITY_PATH, Gateway, home_id, serving
from launch.usage import Prices
from worker.metrics import UsageMetrics
from worker.ports import HOST, free_port, taken

log = logging.getLogger(__name__)


def _recorded_port(home: Path) -> int | None:
    try:
        return int(json.loads((home / "gateway.json").read_text())["port"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


async def _serves_another_home(port: int, secret: bytes) -> bool:
    """Something on `port` is not a gateway of this home (another home's gateway, another program)."""
    if not taken(port):
        return False
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"http://{HOST}:{port}{IDENTITY_PATH}") as answer,
        ):
            return bool((await answer.json()).get("home") != home_id(secret))
    return True


async def gateway_port(home: Path, secret: bytes, chosen: int | None) -> int:
    """The port of this home's gateway: `chosen`, else the recorded one, else a new one (recorded)."""
    if chosen:
        return chosen
    recorded = _recorded_port(home)
    if recorded is not None and not await _serves_another_home(recorded, secret):
        return recorded
    port = free_port()
    write_private(home / "gateway.json", json.dumps({"port": port}) + "\n")
    return port


@contextlib.asynccontextmanager
async def serve_gateway(
    home: Path,
    environ: Mapping[str, str],
    port: int | None = None,
    prices: Prices | None = None,
    hold: float = HOLD,
    metrics: UsageMetrics | None = None,
) -> AsyncIterator[GatewayAccess]:
    """The home's gateway, served by this process while the context lasts (counting each answer's
    usage into `metrics`)."""
    home.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(home, environ, prices or Prices(), hold, metrics.count if metrics else None)
    bound = await gateway_port(home, gateway.secret, port)
    async with serving(gateway, HOST, bound, reuse_port=True):
        log.info("model gateway of %s on %s:%d", home, HOST, bound)
        yield GatewayAccess(url=f"http://{HOST}:{bound}", secret=gateway.secret)
