"""A pod's agent, run through a model gateway of the pod's own: its usage, its budget, its limits.

A pod's traffic cannot reach the worker's gateway (it is on the worker's
loopback), so the entrypoint serves one in the pod, the same server
(`launch.gateway_server`), for its one agent:

- the agent gets, in every provider's variables, the gateway's URL with a
  token the gateway minted, and a placeholder for its key; the key itself
  (the apiKeySecretRef, `GT_GATEWAY_KEY`) stays in the entrypoint, which
  makes itself unreadable to the agent, the same user (`launch.unreadable`);
- the worker's settings arrive in `GT_GATEWAY` (`PodGateway`): where the
  providers are, the price table, the budget, and what earlier attempts
  spent (so the budget covers all of them);
- every second the entrypoint reads the ledger: a spent budget, or a limit
  too long to hold, stops the agent within seconds (`AgentRun.stopped`).

What the pod spent, over all attempts, goes in the termination message
(`PodReport`), where the worker reads it from the pod's status; while the
agent works, the running total is a line of the pod's log whenever it
changes (at most every 10 s), where the worker's watcher reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from crds.usage import Budget, ModelUsage, Tokens, Usage
from launch.agents import PROVIDERS
from launch.gateway import POD_GATEWAY_BASE, LimitRecord, agent_directory, gateway_base, mint, pending_limit
from launch.gateway_server import HOLD, Gateway, serving
from launch.usage import GATEWAY_LEDGER, Price, Prices, UsageRecord, append, usage_counter, write_budget

HOST = "127.0.0.1"
AGENT_KEY = "pod/agent"  # one agent per pod: its ledger's name in the gateway's home
CHECK_SECONDS = 1.0  # how often the entrypoint reads the agent's ledger
STOP_GRACE_SECONDS = 10.0  # SIGTERM, then this long before SIGKILL
TAIL_BYTES = 8192  # the output kept for the termination message
MESSAGE_BYTES = 4000  # Kubernetes keeps 4096 bytes of a termination message
USAGE_MARK = "gastown-usage: "  # a line of the pod's log with the running total after it
USAGE_LINE_SECONDS = 10.0  # the least time between two such lines


class PodGateway(BaseModel):
    """The worker's settings for a pod's gateway (`GT_GATEWAY`); the key is `GT_GATEWAY_KEY`."""

    upstreams: dict[str, str] = Field(default_factory=dict)  # the worker's providers' URL variables
    key_variables: list[str] = Field(default_factory=list)  # where the gateway reads the key
    budget: Budget | None = None
    spent: list[ModelUsage] = Field(default_factory=list)  # the polecat's earlier attempts
    prices: dict[str, Price] = Field(default_factory=dict)  # the worker's table, overrides included
    hold: float = HOLD

    def environ(self, key: str | None) -> dict[str, str]:
        """The environment the gateway reads providers and keys from."""
        keys = {variable: key for variable in self.key_variables} if key else {}
        return {**self.upstreams, **keys}


def upstreams_of(environ: Mapping[str, str]) -> dict[str, str]:
    """The providers' URL variables the worker sets: where the pod's gateway sends requests."""
    names = {name for provider in PROVIDERS.values() for name in provider.url_variables}
    return {name: value for name, value in environ.items() if name in names and value}


class PodReport(BaseModel):
    """The agent container's termination message: what the worker reads of how the pod ended."""

    branch: str | None = None
    commit: str | None = None
    usage: Usage | None = None
    over_budget: str | None = None
    limit: LimitRecord | None = None
    tail: str = ""

    def message(self) -> str:
        """As JSON, within Kubernetes' size for a termination message (the tail is cut to fit)."""
        tail = self.tail[-MESSAGE_BYTES:]
        while True:
            text = self.model_copy(update={"tail": tail}).model_dump_json(exclude_none=True)
            if len(text.encode()) <= MESSAGE_BYTES or not tail:
                return text
            tail = tail[len(tail) // 4 + 1 :]


@dataclass
class AgentRun:
    exit_code: int
    tail: str
    usage: Usage | None = None
    over_budget: str | None = None  # the agent was stopped: its budget is spent
    limit: LimitRecord | None = None  # the agent was stopped: a limit too long to hold

    @property
    def stopped(self) -> bool:
        return self.over_budget is not None or self.limit is not None


def through_gateway(
    env: Mapping[str, str], files: Mapping[str, str], base: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The agent's environment and files with the stand-in gateway of the pod's spec replaced."""
    return (
        {name: value.replace(POD_GATEWAY_BASE, base) for name, value in env.items()},
        {name: text.replace(POD_GATEWAY_BASE, base) for name, text in files.items()},
    )


async def run_agent(
    argv: list[str],
    env: dict[str, str],
    files: dict[str, str],
    file_dir: Path | None,
    settings: PodGateway | None,
    home: Path,
    key: str | None = None,
) -> AgentRun:
    """Run the agent to its end (or until it must stop), its output copied to ours and its tail kept."""
    async with contextlib.AsyncExitStack() as stack:
        check = None
        if settings is not None:
            gateway_home = home / ".gastown-gateway"
            gateway_home.mkdir(mode=0o700, parents=True, exist_ok=True)
            prices = Prices(settings.prices)
            gateway = Gateway(gateway_home, settings.environ(key), prices, settings.hold)
            port = await stack.enter_async_context(serving(gateway, HOST, 0))
            agent_dir = agent_directory(gateway_home, AGENT_KEY)
            agent_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            carry_over(agent_dir, settings.spent)
            write_budget(agent_dir, settings.budget)
            base = gateway_base(f"http://{HOST}:{port}", mint(gateway.secret, AGENT_KEY))
            env, files = through_gateway(env, files, base)
            check = _Check(agent_dir, prices, settings.budget)
        if file_dir is not None:
            file_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name, content in files.items():
                (file_dir / Path(name).name).write_text(content)
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        tail = bytearray()
        copying = asyncio.create_task(_copy(process, tail))
        over_budget = limit = None
        while process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), CHECK_SECONDS)
            if process.returncode is None and check is not None:
                over_budget, limit = check.why_stop()
                if over_budget or limit:
                    await _stop(process)
        await copying
        if check is not None and not (over_budget or limit):
            # It ended first, on the gateway's refusal, say: a spent budget is why, whatever its exit
            # code; a limit, if it failed.
            over_budget, limit = check.why_stop()
            limit = limit if process.returncode != 0 else None
        assert process.returncode is not None
        return AgentRun(
            exit_code=process.returncode,
            tail=tail.decode(errors="replace"),
            usage=check.counter.usage() if check else None,
            over_budget=over_budget,
            limit=limit,
        )


def carry_over(agent_dir: Path, spent: list[ModelUsage]) -> None:
    """Earlier attempts' spend, as the first lines of this pod's ledger: the budget covers them all."""
    for usage in spent:
        counts = usage.model_dump(include=set(Tokens.model_fields))
        append(agent_dir / GATEWAY_LEDGER, UsageRecord(model=usage.model, cost_usd=usage.cost_usd, **counts))


class _Check:
    def __init__(self, agent_dir: Path, prices: Prices, budget: Budget | None) -> None:
        self.agent_dir = agent_dir
        self.budget = budget
        self.counter = usage_counter(agent_dir, prices)
        self.shown: tuple[Usage | None, float] = (None, 0.0)  # the usage last in the log, and when

    def why_stop(self) -> tuple[str | None, LimitRecord | None]:
        usage = self.counter.usage()
        self._show(usage)
        over_budget = self.budget.exceeded(usage) if self.budget else None
        return over_budget, pending_limit(self.agent_dir, time.time())

    def _show(self, usage: Usage | None) -> None:
        """The running total, into the pod's log when it has changed (at most every USAGE_LINE_SECONDS):
        the worker's watcher reads it from there (`usage_in_log`)."""
        shown, when = self.shown
        if usage is None or usage == shown or time.monotonic() - when < USAGE_LINE_SECONDS:
            return
        self.shown = (usage, time.monotonic())
        sys.stderr.write(f"{USAGE_MARK}{usage.model_dump_json(by_alias=True, exclude_none=True)}\n")
        sys.stderr.flush()


def usage_in_log(log: str) -> Usage | None:
    """The latest running total a pod's entrypoint wrote into its log (None: none in `log`)."""
    for line in reversed(log.splitlines()):
        _, mark, rest = line.partition(USAGE_MARK)
        if mark:
            with contextlib.suppress(ValueError):
                return Usage.model_validate_json(rest)
    return None


async def _copy(process: asyncio.subprocess.Process, tail: bytearray) -> None:
    """The agent's output to the container's (its log), the last TAIL_BYTES kept."""
    assert process.stdout is not None
    out = sys.stdout.buffer
    while chunk := await process.stdout.read(65536):
        out.write(chunk)
        out.flush()
        tail.extend(chunk)
        del tail[:-TAIL_BYTES]


async def _stop(process: asyncio.subprocess.Process) -> None:
    """The agent's whole process group: asked to end, then killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def settings_from(env: dict[str, str]) -> tuple[PodGateway | None, str | None]:
    """The gateway's settings and key, taken out of the environment the agent inherits."""
    raw, key = env.pop("GT_GATEWAY", None), env.pop("GT_GATEWAY_KEY", None)
    return (PodGateway.model_validate_json(raw) if raw else None), key
