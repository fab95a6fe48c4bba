"""Tracing, optional and off by default (GASTOWN_TRACING=1): temporalio's OpenTelemetry
interceptor on every client of the process, and so on its workers, which take their client's
interceptors. Each workflow start, update and signal, each workflow run and each activity becomes
a span, in one trace from `gastown apply` (or the bridge) to the activity's end.

Spans go out over OTLP/HTTP where OpenTelemetry's own variables say (OTEL_EXPORTER_OTLP_ENDPOINT,
default http://localhost:4318; OTEL_SERVICE_NAME, default `gastown`), in batches.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from client.settings import Settings

if TYPE_CHECKING:  # a process that does not trace imports neither the SDK nor OpenTelemetry here
    from temporalio.client import Interceptor

_provider: Any = None  # this process's TracerProvider, once tracing is on


def tracing_interceptors(settings: Settings) -> list[Interceptor]:
    """The client interceptors that trace, with `settings.tracing`; none otherwise."""
    if not settings.tracing:
        return []
    # Imported here: a process that does not trace never loads OpenTelemetry.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from temporalio.contrib.opentelemetry import TracingInterceptor

    global _provider
    if _provider is None:  # once a process: OpenTelemetry keeps the first provider set
        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "gastown")})
        _provider = TracerProvider(resource=resource)
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(_provider)
    return [TracingInterceptor()]


def flush_traces(timeout_millis: int = 5000) -> None:
    """Export the spans not sent yet: for a process that ends without running its exit hooks."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)
