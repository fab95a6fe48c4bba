"""Tracing (GASTOWN_TRACING=1): `gastown apply` and `gastown worker` export OpenTelemetry spans
over OTLP/HTTP, in one trace from the apply to the polecat's activities.

The receiver is this test's own OTLP/HTTP endpoint, decoding what arrives with OpenTelemetry's
protobuf definitions; the CLI, the worker and the exporters are the real ones.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from temporalio.client import Client

from client.settings import Settings
from tests.helpers import (
    GASTOWN,
    GitRig,
    polecat_manifest,
    rig_manifest,
    terminate_running,
    wait_until,
    worker_env,
)
from worker.ports import free_port


class Receiver:
    """Spans received: (service name, span name, trace id)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, bytes]] = []

    async def traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource in export.resource_spans:
            service = next(
                a.value.string_value for a in resource.resource.attributes if a.key == "service.name"
            )
            for scope in resource.scope_spans:
                self.spans += [(service, span.name, span.trace_id) for span in scope.spans]
        return web.Response(content_type="application/x-protobuf")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", found.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield found, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_an_apply_and_its_polecats_activities_are_one_trace(
    receiver: tuple[Receiver, str],
    settings: Settings,
    client: Client,
    git_rig: GitRig,
    rig_name: str,
    tmp_path: Path,
) -> None:
    """With tracing on, the CLI's apply and the worker's workflow run and activities are spans of
    one trace, each process under its service name."""
    spans, endpoint = receiver
    env = {
        **worker_env(settings.temporal_address, settings.task_queue, settings.home, settings.tmux_socket),
        "GASTOWN_TRACING": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # milliseconds between batches
    }
    worker = await asyncio.create_subprocess_exec(
        GASTOWN,
        "worker",
        env={**env, "OTEL_SERVICE_NAME": "gastown-worker"},
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        manifests = tmp_path / "town.yaml"
        manifests.write_text(
            yaml.safe_dump_all(
                [rig_manifest(rig_name, git_rig), polecat_manifest("nux", rig_name, "--commit", "n.txt=n")]
            )
        )
        apply = await asyncio.create_subprocess_exec(
            GASTOWN, "apply", "-f", str(manifests), env={**env, "OTEL_SERVICE_NAME": "gastown-cli"}
        )
        assert await apply.wait() == 0

        def traced() -> tuple[str, str, bytes] | None:
            return next((s for s in spans.spans if s[1] == "RunActivity:tmux.start_agent"), None)

        started = await wait_until(traced, "the worker's span of the agent's start", 60)
    finally:
        worker.send_signal(signal.SIGTERM)
        await worker.wait()
        await terminate_running(client, settings.task_queue)
    trace = [(service, name) for service, name, trace_id in spans.spans if trace_id == started[2]]
    assert ("gastown-cli", "StartUpdateWithStartWorkflow:Polecat") in trace, trace
    assert ("gastown-worker", "RunWorkflow:Polecat") in trace, trace
    assert ("gastown-worker", "RunActivity:tmux.start_agent") in trace
