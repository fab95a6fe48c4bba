"""Usage ledgers and prices: what an agent spent, request by request, and what that cost.

A ledger is a file of JSON lines, one per model request, appended to and
never rewritten, so a crash loses at most the line being written and a line
is never counted twice (a reader keeps its offset). Two writers share the
format: the worker's model gateway (every request of every agent that goes
through it) and an agent itself, at `$GT_USAGE_FILE` (for a custom agent
whose model traffic does not go through the gateway). A line:

    {"model": "claude-sonnet-4-5", "input_tokens": 1200, "output_tokens": 310,
     "cache_read_tokens": 0, "cache_write_tokens": 0}

with optional `provider` (a local `ollama` model costs nothing), `requests`
(default 1) and `cost_usd` (the agent's own figure, used instead of the
price table). `input_tokens` are those not read from a cache.

Prices are USD per million tokens, looked up by the longest known prefix of
the model's name (so dated names find their model); the shipped table is
overridden, model by model, by the worker's GASTOWN_PRICES file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crds.common import ApiModel
from crds.usage import Budget, ModelUsage, Tokens, Usage

# A model name's date or alias suffix: -20250929, -2024-08-06, @20250929, -latest.
_DATED = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|@\d{8}|-latest)$")
# The ledger the gateway writes in a polecat's agent directory, and the one its agent may write.
GATEWAY_LEDGER = "gateway-usage.jsonl"
AGENT_LEDGER = "usage.jsonl"
# The budget the agent's watcher holds it to, for the gateway to refuse requests beyond it.
BUDGET_FILE = "budget.json"
# Providers whose models run on the user's own machines: no price per token.
FREE_PROVIDERS = frozenset({"ollama"})


class UsageRecord(BaseModel):
    """One line of a ledger."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    provider: str | None = None
    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    cache_read_tokens: int = Field(0, ge=0)
    cache_write_tokens: int = Field(0, ge=0)
    requests: int = Field(1, ge=0)
    cost_usd: float | None = Field(None, ge=0)


class Price(ApiModel):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float = Field(0.0, ge=0)
    cache_write: float = Field(0.0, ge=0)

    def of(self, record: UsageRecord) -> float:
        return (
            record.input_tokens * self.input
            + record.output_tokens * self.output
            + record.cache_read_tokens * self.cache_read
            + record.cache_write_tokens * self.cache_write
        ) / 1_000_000


def _price(input: float, output: float, cache_read: float = 0.0, cache_write: float = 0.0) -> Price:
    return Price(input=input, output=output, cache_read=cache_read, cache_write=cache_write)


# The providers' published list prices when this table was written (2025-11); a team's own
# (discounts, newer models) go in GASTOWN_PRICES.
DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-4-5": _price(5, 25, 0.5, 6.25),
    "claude-opus-4-1": _price(15, 75, 1.5, 18.75),
    "claude-opus-4": _price(15, 75, 1.5, 18.75),
    "claude-sonnet-4-5": _price(3, 15, 0.3, 3.75),
    "claude-sonnet-4": _price(3, 15, 0.3, 3.75),
    "claude-3-7-sonnet": _price(3, 15, 0.3, 3.75),
    "claude-haiku-4-5": _price(1, 5, 0.1, 1.25),
    "claude-3-5-haiku": _price(0.8, 4, 0.08, 1),
    "gpt-5": _price(1.25, 10, 0.125),
    "gpt-5-mini": _price(0.25, 2, 0.025),
    "gpt-5-nano": _price(0.05, 0.4, 0.005),
    "gpt-4.1": _price(2, 8, 0.5),
    "gpt-4.1-mini": _price(0.4, 1.6, 0.1),
    "gpt-4.1-nano": _price(0.1, 0.4, 0.025),
    "gpt-4o": _price(2.5, 10, 1.25),
    "gpt-4o-mini": _price(0.15, 0.6, 0.075),
    "o3": _price(2, 8, 0.5),
    "o4-mini": _price(1.1, 4.4, 0.275),
}


class PriceFile(ApiModel):
    """GASTOWN_PRICES: `{"models": {"<model>": {"input": 3, "output": 15, "cacheRead": 0.3}}}`."""

    models: dict[str, Price]


class Prices:
    """The price table: the shipped one, with the worker's own over it."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self.table = {**DEFAULT_PRICES, **(overrides or {})}

    @classmethod
    def load(cls, path: Path | None) -> Prices:
        """The table with `path`'s prices over it; a bad file is an error naming the field."""
        if path is None:
            return cls()
        try:
            return cls(PriceFile.model_validate_json(path.read_text()).models)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                for problem in error.errors()
            )
            raise ValueError(f"GASTOWN_PRICES {path}: {problems}") from None

    def of(self, model: str) -> Price | None:
        """The price of `model`, by its name or its name with a date (`claude-sonnet-4-5-20250929`,
        `gpt-4o-2024-08-06`) or LiteLLM's `provider/` before it; any other name is unknown
        (`claude-opus-4-8` is not priced as claude-opus-4)."""
        name = model.rsplit("/", 1)[-1]
        base = _DATED.sub("", name)
        return self.table.get(name) or self.table.get(base)

    def cost(self, record: UsageRecord) -> float | None:
        if record.cost_usd is not None:
            return record.cost_usd
        if record.provider in FREE_PROVIDERS:
            return 0.0
        price = self.of(record.model)
        return None if price is None else price.of(record)


def append(ledger: Path, record: BaseModel) -> None:
    """One line, in one write to a file opened for appending: whole lines, whoever else writes."""
    line = record.model_dump_json(exclude_none=True) + "\n"
    descriptor = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


class LedgerReader:
    """Reads a ledger as it grows: each complete line once; a line being written waits for its end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.skipped = 0  # lines that are not a usage record (an agent's own file may hold anything)

    def read(self) -> list[UsageRecord]:
        try:
            with self.path.open("rb") as stream:
                stream.seek(self.offset)
                data = stream.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        records = []
        for line in complete.splitlines():
            if not line.strip():
                continue
            try:
                records.append(UsageRecord.model_validate_json(line))
            except ValidationError:
                self.skipped += 1
        return records


class UsageCounter:
    """The running total of an agent's ledgers, read as they grow."""

    def __init__(self, ledgers: Iterable[Path], prices: Prices) -> None:
        self.readers = [LedgerReader(path) for path in ledgers]
        self.prices = prices
        self.models: dict[str, ModelUsage] = {}

    def usage(self) -> Usage | None:
        """What the ledgers say so far; None while they hold nothing."""
        for reader in self.readers:
            for record in reader.read():
                self._add(record)
        return Usage.of(self.models.values()) if self.models else None

    def _add(self, record: UsageRecord) -> None:
        counts = record.model_dump(include=set(Tokens.model_fields))
        added = ModelUsage(model=record.model, cost_usd=self.prices.cost(record), **counts)
        before = self.models.get(record.model)
        self.models[record.model] = added if before is None else before.plus(added)


def write_budget(agent_dir: Path, budget: Budget | None) -> None:
    """The agent's budget where the gateway reads it (none: no file)."""
    path = agent_dir / BUDGET_FILE
    if budget is None:
        path.unlink(missing_ok=True)
        return
    draft = path.with_suffix(".draft")
    draft.write_text(budget.model_dump_json())
    draft.replace(path)  # whole or not at all


def read_budget(agent_dir: Path) -> Budget | None:
    try:
        return Budget.model_validate_json((agent_dir / BUDGET_FILE).read_text())
    except (FileNotFoundError, ValidationError):
        return None


def usage_counter(agent_dir: Path, prices: Prices) -> UsageCounter:
    """What an agent spent: the gateway's ledger of its requests and its own ($GT_USAGE_FILE)."""
    return UsageCounter([agent_dir / GATEWAY_LEDGER, agent_dir / AGENT_LEDGER], prices)
