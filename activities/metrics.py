"""Counters the activities add to, served with the Temporal SDK's metrics on the worker's `--metrics`.

Through `activity.metric_meter()`: the worker's runtime meter, with the activity's own labels
(its type, the task queue). Labels are bounded: never a polecat's name.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.common import MetricCounter


def started_counter() -> MetricCounter:
    """Agents started, local sessions and pods (Prometheus: gastown_polecat_starts_total)."""
    return activity.metric_meter().create_counter(
        "gastown_polecat_starts", "Agents started: sessions and pods."
    )
