"""What agents spent: tokens, model requests and cost, per model and in total (our extension).

A polecat's `status.usage`, and the totals of a convoy's or a rig's polecats,
are `Usage`. Tokens are always counted; a cost is only ever one worked out
from a known price: a model without a price has cost None ("unknown" for
people), never a made-up zero, and so has any total it is part of.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field, model_validator

from crds.common import ApiModel, FieldError

UNKNOWN = "unknown"


class Tokens(ApiModel):
    """Counts that add up: input (not read from a cache), output, cache reads and writes, requests."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = Field(0, description="Model requests answered with a usage report.")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def new_tokens(self) -> int:
        """What a token budget counts: all but cache reads (a cached prompt read again each turn)."""
        return self.input_tokens + self.output_tokens + self.cache_write_tokens


class ModelUsage(Tokens):
    model: str
    cost_usd: float | None = Field(None, description="Absent: no price is known for the model.")

    def plus(self, other: ModelUsage) -> ModelUsage:
        """This model's usage and more of it: counts added, the cost known only if both are."""
        counts = {name: getattr(self, name) + getattr(other, name) for name in Tokens.model_fields}
        priced = self.cost_usd is not None and other.cost_usd is not None
        cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0) if priced else None
        return ModelUsage(model=self.model, cost_usd=cost, **counts)


class Usage(Tokens):
    """Totals over models; `models` has the breakdown, largest first."""

    cost_usd: float | None = Field(None, description="Absent: a model in it has no known price.")
    cost: str = Field(UNKNOWN, description="The cost as people read it: $0.0421, or unknown.")
    models: list[ModelUsage] = Field(default_factory=list)

    @classmethod
    def of(cls, models: Iterable[ModelUsage]) -> Usage:
        """The total of per-model counts; models named twice are added together."""
        merged: dict[str, ModelUsage] = {}
        for usage in models:
            before = merged.get(usage.model)
            merged[usage.model] = usage.model_copy() if before is None else before.plus(usage)
        ordered = sorted(merged.values(), key=lambda usage: (-usage.total_tokens, usage.model))
        totals = {name: sum(getattr(usage, name) for usage in ordered) for name in Tokens.model_fields}
        costs = [usage.cost_usd for usage in ordered]
        cost = None if None in costs else round(sum(c for c in costs if c is not None), 10)
        return cls(**totals, cost_usd=cost, cost=format_cost(cost), models=ordered)

    @classmethod
    def total(cls, usages: Iterable[Usage | None]) -> Usage:
        """The sum of several polecats' usage (a convoy's, a rig's)."""
        return cls.of(model for usage in usages if usage is not None for model in usage.models)


def format_cost(cost: float | None) -> str:
    """$0.0421 below a dollar, $12.34 above; `unknown` without a price."""
    if cost is None:
        return UNKNOWN
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"


class Budget(ApiModel):
    """Our extension `spec.budget`: what an agent may spend, over all its attempts."""

    max_cost_usd: float | None = Field(
        None, gt=0, description="USD, at the worker's prices; a model without a price is not held to it."
    )
    max_tokens: int | None = Field(
        None, gt=0, description="Input, output and cache-write tokens (cache reads are not counted)."
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.max_cost_usd is None and self.max_tokens is None:
            raise FieldError("maxCostUSD", "maxCostUSD or maxTokens is required in a budget")
        return self

    def exceeded(self, usage: Usage | None) -> str | None:
        """Why `usage` has spent this budget, as people read it; None while some is left."""
        if usage is None:
            return None
        if self.max_tokens is not None and usage.new_tokens >= self.max_tokens:
            return f"used {usage.new_tokens:,} tokens of spec.budget.maxTokens {self.max_tokens:,}"
        if (
            self.max_cost_usd is not None
            and usage.cost_usd is not None
            and usage.cost_usd >= self.max_cost_usd
        ):
            return f"spent {usage.cost} of spec.budget.maxCostUSD {format_cost(self.max_cost_usd)}"
        return None
