"""The model gateway's server: a reverse proxy between agents and their model providers.

It forwards each agent request to its provider and streams the answer back as
it comes, event by event, counting what it used into the polecat's ledger. It
refuses a request once its polecat's budget is spent (402), and holds one
through a provider's short limit, sending it again after the reset; a longer
limit is handed to the agent and recorded for its watcher, which parks the
polecat.

Two processes serve it: the worker, for the local agents of its home
(`worker.gateway`: one port per home), and a pod's entrypoint, for its one
agent (`launch.pod_entrypoint`). The rules (tokens, headers, reading usage and
limits) are in `launch.gateway`; this module is the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import aiohttp
from aiohttp import web

from launch.agents import PROVIDERS
from launch.gateway import (
    LIMITS_LEDGER,
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
from launch.usage import (
    GATEWAY_LEDGER,
    Prices,
    UsageCounter,
    UsageRecord,
    append,
    read_budget,
    usage_counter,
)

log = logging.getLogger(__name__)
IDENTITY_PATH = "/.gastown/home"  # answers which home's gateway this is
MAX_COUNTERS = 1000  # agents with a budget whose totals are kept between their requests
HOLD = 120.0  # seconds: the longest a request waits out a provider's limit (GASTOWN_RATE_LIMIT_HOLD)
MAX_HOLDS = 5  # times one request is held before the limit goes to the agent anyway


def home_id(secret: bytes) -> str:
    return hashlib.sha256(b"home:" + secret).hexdigest()[:16]


class Gateway:
    def __init__(
        self,
        home: Path,
        environ: Mapping[str, str],
        prices: Prices,
        hold: float = HOLD,
        counted: Callable[[str, UsageRecord, float | None], None] | None = None,
    ) -> None:
        self.home = home
        self.counted = counted  # told each answer's provider, usage and cost (the worker's metrics)
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
        return web.json_response({"home": home_id(self.secret)})

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
        """Record a limit the agent's watcher is to park it for (`launch.gateway.pending_limit`)."""
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
        if record is not None and self.counted is not None:
            self.counted(provider, record, self.prices.cost(record))
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


@contextlib.asynccontextmanager
async def serving(gateway: Gateway, host: str, port: int, reuse_port: bool = False) -> AsyncIterator[int]:
    """`gateway` served on host:port (0: a port the system picks) while the context lasts; the port."""
    # No total timeout: an agent's answer may stream for many minutes.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        gateway.session = session
        runner = web.AppRunner(gateway.app(), handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        listening = socket.socket()
        try:
            if reuse_port:  # every worker of a home binds the home's one port
                listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind((host, port))
            await web.SockSite(runner, listening).start()
            yield int(listening.getsockname()[1])
        finally:
            await runner.cleanup()
            listening.close()
