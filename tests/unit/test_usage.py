"""Usage ledgers, prices and totals: what an agent spent is counted once, and priced only when known."""

from __future__ import annotations

from pathlib import Path

import pytest

from crds.usage import Budget, ModelUsage, Usage
from launch.usage import LedgerReader, Prices, UsageCounter, UsageRecord, append


def test_a_dated_or_prefixed_model_name_finds_its_price() -> None:
    """Providers' dated names and LiteLLM's `provider/` prefix find the model's list price; another
    model whose name begins alike does not (gpt-4o-mini is not gpt-4o, claude-opus-4-8 not claude-opus-4)."""
    prices = Prices()
    assert prices.of("claude-sonnet-4-5-20250929") == prices.table["claude-sonnet-4-5"]
    assert prices.of("anthropic/claude-sonnet-4-5") == prices.table["claude-sonnet-4-5"]
    assert prices.of("gpt-4o-mini-2024-07-18") == prices.table["gpt-4o-mini"]
    assert prices.of("gpt-4o") == prices.table["gpt-4o"]
    assert prices.of("claude-sonnet-4-5@20250929") == prices.table["claude-sonnet-4-5"]
    assert prices.of("claude-opus-4-8") is None and prices.of("gpt-4o-audio") is None


def test_an_unknown_model_has_tokens_and_no_cost() -> None:
    """A model without a price costs None, never zero, and so does any total it is part of."""
    prices = Prices()
    assert prices.of("test-model") is None and prices.of("claude-sonnet-45") is None
    assert prices.cost(UsageRecord(model="test-model", input_tokens=10)) is None
    known = ModelUsage(model="claude-sonnet-4-5", input_tokens=1_000_000, cost_usd=3.0)
    unknown = ModelUsage(model="test-model", input_tokens=5)
    total = Usage.of([known, unknown])
    assert (total.cost_usd, total.cost, total.input_tokens) == (None, "unknown", 1_000_005)
    assert Usage.of([known]).cost == "$3.00"


def test_a_local_model_costs_nothing_and_an_agents_own_cost_is_taken() -> None:
    prices = Prices()
    assert prices.cost(UsageRecord(model="llama3", provider="ollama", input_tokens=99)) == 0.0
    assert prices.cost(UsageRecord(model="test-model", cost_usd=0.25)) == 0.25


def test_the_workers_price_file_overrides_the_table(tmp_path: Path) -> None:
    """GASTOWN_PRICES adds models and replaces shipped prices; a bad file names the field and rule."""
    path = tmp_path / "prices.json"
    path.write_text('{"models": {"test-model": {"input": 1, "output": 2, "cacheRead": 0.5}}}')
    prices = Prices.load(path)
    record = UsageRecord(
        model="test-model", input_tokens=1_000_000, output_tokens=500_000, cache_read_tokens=2
    )
    assert prices.cost(record) == pytest.approx(2.000001)
    assert prices.of("claude-sonnet-4-5") is not None  # the rest of the table stays
    path.write_text('{"models": {"test-model": {"input": -1, "output": 2}}}')
    with pytest.raises(
        ValueError, match=r"models\.test-model\.input: Input should be greater than or equal to 0"
    ):
        Prices.load(path)


def test_a_ledger_is_read_once_line_by_line_and_a_torn_line_waits(tmp_path: Path) -> None:
    """A reader takes each complete line once; a line still being written is taken when it is whole;
    a line that is not a usage record is skipped, not fatal."""
    ledger = tmp_path / "usage.jsonl"
    reader = LedgerReader(ledger)
    assert reader.read() == []  # no file yet
    append(ledger, UsageRecord(model="m", input_tokens=3))
    with ledger.open("a") as stream:
        stream.write('not json\n{"model": "m", "output_tokens": 4}\n{"model": "m", "inp')
    assert [(r.input_tokens, r.output_tokens) for r in reader.read()] == [(3, 0), (0, 4)]
    assert reader.skipped == 1
    with ledger.open("a") as stream:
        stream.write('ut_tokens": 5}\n')
    assert [r.input_tokens for r in reader.read()] == [5]
    assert reader.read() == []


def test_the_counter_adds_every_ledger_by_model(tmp_path: Path) -> None:
    """The gateway's ledger and the agent's own add up, by model, however often they are read."""
    gateway, own = tmp_path / "gateway.jsonl", tmp_path / "own.jsonl"
    counter = UsageCounter([gateway, own], Prices())
    assert counter.usage() is None
    append(gateway, UsageRecord(model="claude-haiku-4-5", input_tokens=1_000_000))
    append(own, UsageRecord(model="claude-haiku-4-5", output_tokens=1_000_000, requests=2))
    first = counter.usage()
    assert first is not None and first.requests == 3 and first.cost_usd == pytest.approx(6.0)
    append(own, UsageRecord(model="my-model", output_tokens=7))
    usage = counter.usage()
    assert usage is not None
    assert [(m.model, m.requests) for m in usage.models] == [("claude-haiku-4-5", 3), ("my-model", 1)]
    assert usage.cost == "unknown" and usage.output_tokens == 1_000_007


def test_a_budget_is_spent_by_new_tokens_or_a_known_cost() -> None:
    """maxTokens counts input, output and cache writes (not cache reads); maxCostUSD holds only a
    priced usage; a budget needs one of them, and says which field in its error."""
    usage = Usage.of([ModelUsage(model="m", input_tokens=600, output_tokens=300, cache_read_tokens=10**6)])
    assert Budget(max_tokens=1000).exceeded(usage) is None
    assert Budget(max_tokens=900).exceeded(usage) == "used 900 tokens of spec.budget.maxTokens 900"
    assert Budget(max_cost_usd=0.01).exceeded(usage) is None  # unpriced: not held to a cost
    priced = Usage.of([ModelUsage(model="m", input_tokens=1, cost_usd=0.02)])
    assert Budget(max_cost_usd=0.01).exceeded(priced) == "spent $0.0200 of spec.budget.maxCostUSD $0.0100"
    assert Budget(max_tokens=1).exceeded(None) is None
    with pytest.raises(ValueError, match="maxCostUSD: maxCostUSD or maxTokens is required in a budget"):
        Budget()
