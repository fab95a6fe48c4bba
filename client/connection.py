"""One way to reach Temporal: pydantic payloads, our namespace."""

from __future__ import annotations

import asyncio
import logging
import time

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import PayloadLimitsConfig

from client.settings import Settings
from client.tracing import tracing_interceptors

log = logging.getLogger(__name__)

# A memo holds the resource as people read it; a convoy's status lists every
# bead (up to 2,000: ~150 KiB), far above the 2 KiB warning default and far
# below the server's 2 MiB limit. Warn only when a memo is large for real.
MEMO_WARN_SIZE = 256 * 1024
RETRY_CAP = 5.0  # seconds between tries, at most, while Temporal does not answer
SAY_EVERY = 30.0  # seconds between "still waiting" lines


# Seconds: agents run minutes to hours, a merge seconds to an hour (the SDK's default buckets stop at
# 10 s). Keyed by the name before the unit suffix.
BUCKETS: dict[str, list[float]] = {
    "gastown_agent_run": [1, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800],
    "gastown_merge_latency": [1, 5, 10, 30, 60, 300, 900, 3600],
    "gastown_bridge_handler": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    "gastown_model_request_cost": [0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],  # dollars
}
# One Temporal runtime per metrics address in this process: it serves the SDK's own metrics (the
# workers' slots, polls, task latencies, the client's requests) on that address.
_RUNTIMES: dict[str, Runtime] = {}


def metrics_runtime(address: str) -> Runtime:
    """The runtime that serves Prometheus metrics on `address` (HOST:PORT), made once."""
    if address not in _RUNTIMES:
        prometheus = PrometheusConfig(
            bind_address=address,
            counters_total_suffix=True,
            durations_as_seconds=True,
            unit_suffix=True,
            histogram_bucket_overrides=BUCKETS,
        )
        _RUNTIMES[address] = Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    return _RUNTIMES[address]


async def connect(settings: Settings, lazy: bool = False) -> Client:
    """A client of Temporal. `lazy`: connect on first use (and again after a lost connection). With
    `settings.metrics`, the process serves the SDK's Prometheus metrics there."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        payload_limits=PayloadLimitsConfig(memo_warn_size=MEMO_WARN_SIZE),
        lazy=lazy,
        runtime=metrics_runtime(settings.metrics) if settings.metrics else None,
        interceptors=tracing_interceptors(settings),
    )


async def connect_when_up(settings: Settings) -> Client:
    """A client, once Temporal answers: a service started before Temporal, or while it restarts,
    waits for it instead of exiting (and, under a supervisor, crash-looping)."""
    delay, said = 0.1, 0.0
    while True:
        try:
            return await connect(settings)
        except RuntimeError as error:
            if time.monotonic() - said > SAY_EVERY:
                log.warning(
                    "Temporal at %s does not answer yet; waiting (%s)", settings.temporal_address, error
                )
                said = time.monotonic()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)
