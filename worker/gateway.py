"""The worker's model gateway: a reverse proxy between local agents and their model providers.

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

It also refuses a request once its polecat's budget is spent (402), and
holds one through a provider's short limit, sending it again after the reset;
a longer limit is handed to the agent and recorded for its watcher, which
parks the polecat.

The rules (tokens, headers, reading usage and limits) are in `launch.gateway`;
this module is the I/O. Answers are forwarded as they come, event by event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
from aiohttp import web

from client.private_files import write_private
from launch.agents import PROVIDERS
from launch.gateway import (
    LIMITS_LEDGER,
    GatewayAccess,
    LimitRecord,
    UsageMeter,
    agent_directory,
    host_secret,
    limit_reset,
    upstream_headers,
    upstream_url,
    verify,
    with_usage_asked,
)
from launch.usage import GATEWAY_LEDGER, Prices, UsageCounter, append, read_budget, usage_counter
from worker.ports import HOST, free_port, taken

log = logging.getLogger(__name__)
IDENTITY_PATH = "/.gastown/home"  # answers which home's gateway this is
MAX_COUNTERS = 1000  # agents with a budget whose totals are kept between their requests
HOLD = 120.0  # seconds: the longest a request waits out a provider's limit (GASTOWN_RATE_LIMIT_HOLD)
MAX_HOLDS = 5  # times one request is held before the limit goes to the agent anyway


def _home_id(secret: bytes) -> str:
    return hashlib.sha256(b"home:" + secret).hexdigest()[:16]


class Gateway:
    def __init__(self, home: Path, environ: Mapping[str, str], prices: Prices, hold: float = HOLD) -> None:
        self.home = home
        self.hold = hold  # the longest a request waits out a limit; a longer one parks the agent
        self.environ = environ
        self.prices = prices
        self.secret = host_secret(home)
        self.session: aiohttp.ClientSession | None = None
        # The running totals of agents with a budget, read as their ledgers grow.
        self.counters: dict[str, UsageCounter] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get(IDENTITY_PATH, self.identity)
        app.router.add_route("*", "/{token}/{provider}/{path:.*}", self.forward)
        return app

    async def identity(self, request: web.Request) -> web.Response:
        return web.json_response({"home": _home_id(self.secret)})

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """One agent request to its provider, the answer streamed back and its usage counted."""
        provider = request.match_info["provider"]
        agent_key = verify(self.secret, request.match_info["token"])
        if agent_key is None:
            return _error(403, "this gateway did not issue the token in the URL")
        if provider not in PROVIDERS:
            return _error(404, f"no provider {provider}; known: {', '.join(PROVIDERS)}")
        agent_dir = agent_directory(self.home, agent_key)
        spent = self._over_budget(agent_key, agent_dir)
        if spent:  # its watcher stops the agent within seconds; until then it is refused, not served
            return _error(402, f"gastown: this polecat's budget is spent ({spent})", provider)
        ledger = agent_dir / GATEWAY_LEDGER
        path = "/" + request.match_info["path"]
        body, strip_usage = with_usage_asked(path, await request.read())
        assert self.session is not None
        held, tries = 0.0, 0  # how long, and how often, this request has waited out limits
        try:
            while True:
                tries += 1
                async with self.session.request(
                    request.method,
                    upstream_url(provider, self.environ, path),
                    params=request.query,
                    headers=upstream_headers(provider, request.headers, self.environ),
                    data=body or None,
                    allow_redirects=False,
                ) as answer:
                    reset = limit_reset(answer.status, answer.headers, time.time())
                    wait = 0.0 if reset is None else max(reset - time.time(), 0.0)
                    if reset is not None and held + wait > self.hold:  # too long to hold: park the agent
                        self._limited(agent_dir, provider, reset, answer)
                    if reset is None or held + wait > self.hold or tries > MAX_HOLDS:
                        return await self._relay(request, answer, provider, body, strip_usage, ledger)
                # A short limit: the agent's request waits it out and never sees it.
                log.info(
                    "holding a request of %s for %.1fs: %s said %d", agent_key, wait, provider, answer.status
                )
                await asyncio.sleep(wait)
                held += wait
        except aiohttp.ClientError as error:
            return _error(502, f"the gateway could not reach {provider}: {error}")

    @staticmethod
    def _limited(agent_dir: Path, provider: str, reset: float, answer: aiohttp.ClientResponse) -> None:
        """Record a limit the agent's watcher is to park it for (`launch.gateway.latest_limit`)."""
        if agent_dir.is_dir():
            record = LimitRecord(
                provider=provider, until=reset, status=answer.status, message=answer.reason or ""
            )
            append(agent_dir / LIMITS_LEDGER, record)

    def _over_budget(self, agent_key: str, agent_dir: Path) -> str | None:
        """Why the agent may not spend more (its watcher's budget, `launch.usage.write_budget`)."""
        budget = read_budget(agent_dir)
        if budget is None:
            return None
        counter = self.counters.pop(agent_key, None) or usage_counter(agent_dir, self.prices)
        self.counters[agent_key] = counter  # most recent last: the oldest is dropped first
        if len(self.counters) > MAX_COUNTERS:
            del self.counters[next(iter(self.counters))]
        return budget.exceeded(counter.usage())

    async def _relay(
        self,
        request: web.Request,
        answer: aiohttp.ClientResponse,
        provider: str,
        body: bytes,
        strip_usage: bool,
        ledger: Path,
    ) -> web.StreamResponse:
        skip = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}
        response = web.StreamResponse(
            status=answer.status,
            headers={name: value for name, value in answer.headers.items() if name.lower() not in skip},
        )
        await response.prepare(request)
        meter = UsageMeter(provider, answer.headers.get("Content-Type", ""), _model(body), strip_usage)
        async for chunk in answer.content.iter_any():
            forwarded = meter.feed(chunk)
            if forwarded:
                await response.write(forwarded)
        rest, record = meter.finish()
        if record is not None and ledger.parent.is_dir():
            append(ledger, record)  # before the agent has its answer, so its exit finds it counted
        if rest:
            await response.write(rest)
        await response.write_eof()
        return response


def _model(body: bytes) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        model = json.loads(body).get("model")
        return model if isinstance(model, str) else None
    return None


def _error(status: int, message: str, provider: str = "") -> web.Response:
    """An error in the provider's own shape, so the agent's CLI shows its message."""
    error = {"type": "gateway_error", "message": message}
    body = {"type": "error", "error": error} if provider == "anthropic" else {"error": error}
    return web.json_response(body, status=status)


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
            return bool((await answer.json()).get("home") != _home_id(secret))
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
) -> AsyncIterator[GatewayAccess]:
    """The home's gateway, served by this process while the context lasts."""
    home.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(home, environ, prices or Prices(), hold)
    bound = await gateway_port(home, gateway.secret, port)
    # No total timeout: an agent's answer may stream for many minutes.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        gateway.session = session
        runner = web.AppRunner(gateway.app(), handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, HOST, bound, reuse_port=True).start()
            log.info("model gateway of %s on %s:%d", home, HOST, bound)
            yield GatewayAccess(url=f"http://{HOST}:{bound}", secret=gateway.secret)
        finally:
            await runner.cleanup()
