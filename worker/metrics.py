"""What the worker counts beside the Temporal SDK's own metrics, on its `--metrics` address.

The model gateway of the worker's home tells each answer's usage and cost: local agents' tokens,
requests and spend by provider and model (a pod's agent goes through its pod's own gateway, whose
spend reaches the polecat's status, not these counters). Labels are bounded: never a polecat's
name. Cost is a histogram of each request's cost in dollars: its `_sum` is the spend (the SDK's
meter has no float counter).
"""

from __future__ import annotations

from temporalio.common import MetricMeter

from launch.usage import UsageRecord

TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")


class UsageMetrics:
    """gastown_model_tokens_total, gastown_model_requests_total, gastown_model_request_cost_dollars."""

    def __init__(self, meter: MetricMeter) -> None:
        self.tokens = meter.create_counter(
            "gastown_model_tokens", "Tokens of local agents' model requests, by provider, model and type."
        )
        self.requests = meter.create_counter(
            "gastown_model_requests", "Local agents' model requests answered, by provider and model."
        )
        self.cost = meter.create_histogram_float(
            "gastown_model_request_cost",
            "A priced model request's cost (its sum: the spend).",
            unit="dollars",
        )

    def count(self, provider: str, record: UsageRecord, cost: float | None) -> None:
        labels = {"provider": record.provider or provider, "model": record.model}
        self.requests.add(record.requests, labels)
        for kind in TOKEN_TYPES:
            tokens = getattr(record, f"{kind}_tokens")
            if tokens:
                self.tokens.add(tokens, {**labels, "type": kind})
        if cost is not None:  # an unknown model's cost is unknown, never zero
            self.cost.record(cost, labels)
