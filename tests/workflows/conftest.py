"""What every workflow test needs: its workflow on a task queue of its own, served by its fakes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import pytest
from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle
from temporalio.common import TypedSearchAttributes
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from contracts import attributes
from tests.conftest import start_time_skipping
from tests.helpers import wait_until

S = TypeVar("S", bound=BaseModel)


class Starter(Protocol):
    async def __call__(
        self,
        workflow: type,
        run: Callable[..., Awaitable[Any]],
        input: Any,
        activities: Sequence[Callable[..., Any]],
        id_prefix: str,
        search_attributes: TypedSearchAttributes | None = None,
    ) -> WorkflowHandle[Any, Any]: ...


@pytest.fixture
async def start_workflow(time_skipping: WorkflowEnvironment) -> AsyncIterator[Starter]:
    """Start a workflow on a fresh task queue with a worker for it and `activities`; ended afterwards."""
    async with starter(time_skipping) as start:
        yield start


@pytest.fixture
async def own_clock() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own: for tests that skip hours, since on a server shared
    with earlier tests a skip of a minute or more fails ("Timeout expired") once their workers are gone."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def start_on_own_clock(own_clock: WorkflowEnvironment) -> AsyncIterator[Starter]:
    """`start_workflow` on the test's own time-skipping server."""
    async with starter(own_clock) as start:
        yield start


@contextlib.asynccontextmanager
async def starter(time_skipping: WorkflowEnvironment) -> AsyncIterator[Starter]:
    workers: list[Worker] = []
    handles: list[WorkflowHandle[Any, Any]] = []

    async def start(
        workflow: type,
        run: Callable[..., Awaitable[Any]],
        input: Any,
        activities: Sequence[Callable[..., Any]],
        id_prefix: str,
        search_attributes: TypedSearchAttributes | None = None,
    ) -> WorkflowHandle[Any, Any]:
        queue = f"wf-{uuid.uuid4().hex[:8]}"
        worker = Worker(time_skipping.client, task_queue=queue, workflows=[workflow], activities=activities)
        workers.append(worker)
        asyncio.get_running_loop().create_task(worker.run())
        handle = await time_skipping.client.start_workflow(
            run,
            input,
            id=f"{id_prefix}/{queue}",
            task_queue=queue,
            search_attributes=search_attributes or TypedSearchAttributes.empty,
        )
        handles.append(handle)
        return handle

    yield start
    # Open workflows with activities outstanding would hold the shared server's clock for later tests.
    for handle in handles:
        with contextlib.suppress(RPCError):
            await handle.terminate("test finished")
    for worker in workers:
        await worker.shutdown()


async def rolled_over_and_replays(client: Client, workflow_id: str, workflow: type, first_run: str) -> None:
    """The workflow continued as new (its run is no longer `first_run`); deleted, its history replays."""
    latest = client.get_workflow_handle(workflow_id)
    assert (await latest.describe()).run_id != first_run
    await latest.signal("delete")
    await latest.result()
    history = await latest.fetch_history()
    await Replayer(workflows=[workflow], data_converter=client.data_converter).replay_workflow(history)


async def status_when(
    handle: WorkflowHandle[Any, Any], model: type[S], holds: Callable[[S], bool], what: str
) -> S:
    """The workflow's published status once it `holds`, read from the memo as `gastown get` reads it.

    Not a query: the test server's continue-as-new is not atomic (temporalio/sdk-java#1537), and a
    query that lands between two runs can wait for an answer that never comes (seen under load:
    "query deadline exceeded"). The real server answers it.
    """

    async def probe() -> S | None:
        memo = await (await handle.describe()).memo()
        status = model.model_validate(memo.get(attributes.MEMO_STATUS, {}))
        return status if holds(status) else None

    return await wait_until(probe, what, timeout=20)
