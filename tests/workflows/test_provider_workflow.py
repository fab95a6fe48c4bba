"""The Provider workflow's policy on the time-skipping test server: a cap, first come first served,
a pause after a limit, and slots of vanished holders given on.

The askers are tiny workflows that only record the `admitted` signals they get.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# This module defines a workflow (the asker): the sandbox re-imports it, so what it uses is
# passed through, as in the workflows' own modules.
with workflow.unsafe.imports_passed_through():
    from client.visibility import describe_running
    from contracts import providers
    from contracts.providers import Ask, LimitNotice, ProviderInput, ProviderStatus
    from tests.helpers import wait_until
    from workflows.provider import RECLAIM_EVERY, ProviderWorkflow


@workflow.defn(name="Asker")
class Asker:
    """Stands in for a polecat: counts its admissions."""

    def __init__(self) -> None:
        self.admissions = 0

    @workflow.signal
    def admitted(self, provider: str) -> None:
        self.admissions += 1

    @workflow.query
    def count(self) -> int:
        return self.admissions

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


class Town:
    def __init__(self, env: WorkflowEnvironment, queue: str) -> None:
        self.env, self.queue = env, queue
        self.gate: WorkflowHandle[Any, Any] | None = None

    @activity.defn(name=providers.RECLAIM)
    async def reclaim(self, holders: list[str]) -> list[str]:
        return [holder for holder in holders if await describe_running(self.env.client, holder) is None]

    async def askers(self, count: int) -> list[WorkflowHandle[Any, Any]]:
        return [
            await self.env.client.start_workflow(
                Asker.run, id=f"asker-{uuid.uuid4().hex[:6]}", task_queue=self.queue
            )
            for _ in range(count)
        ]

    async def ask(self, *askers: WorkflowHandle[Any, Any]) -> None:
        if self.gate is None:
            self.gate = await self.env.client.start_workflow(
                ProviderWorkflow.run,
                ProviderInput(status=ProviderStatus(provider="anthropic", cap=2)),
                id=f"provider/anthropic-{self.queue}",
                task_queue=self.queue,
            )
        for asker in askers:
            await self.gate.signal(ProviderWorkflow.ask, Ask(polecat=asker.id, cap=2))

    async def admitted(self, askers: list[WorkflowHandle[Any, Any]]) -> list[int]:
        return [await asker.query(Asker.count) for asker in askers]


@pytest.fixture
async def town(own_clock: WorkflowEnvironment) -> AsyncIterator[Town]:
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    town = Town(own_clock, queue)
    async with Worker(
        own_clock.client, task_queue=queue, workflows=[ProviderWorkflow, Asker], activities=[town.reclaim]
    ):
        yield town


async def admissions_are(town: Town, askers: list[WorkflowHandle[Any, Any]], expected: list[int]) -> None:
    async def matches() -> bool:
        return await town.admitted(askers) == expected

    await wait_until(matches, f"admissions {expected}")


async def test_at_most_cap_hold_a_slot_and_the_first_waiting_gets_the_next(town: Town) -> None:
    """Cap 2 and four asking, in order: the first two are admitted; each release admits the next in
    order; the gate's memo says who runs and who waits."""
    askers = await town.askers(4)
    await town.ask(*askers)
    await admissions_are(town, askers, [1, 1, 0, 0])
    assert town.gate is not None
    status = await town.gate.query(ProviderWorkflow.current)
    assert (status.running, status.waiting) == ([a.id for a in askers[:2]], [a.id for a in askers[2:]])
    await town.gate.signal(ProviderWorkflow.release, askers[1].id)
    await admissions_are(town, askers, [1, 1, 1, 0])
    await town.ask(askers[0])  # asking again while holding a slot changes nothing
    await admissions_are(town, askers, [1, 1, 1, 0])


async def test_a_limit_pauses_admissions_until_its_reset(town: Town, own_clock: WorkflowEnvironment) -> None:
    """One agent met a limit resetting in an hour: a freed slot stays free until then; then the
    waiting one is admitted."""
    askers = await town.askers(3)
    await town.ask(*askers)
    await admissions_are(town, askers, [1, 1, 0])
    assert town.gate is not None
    until = await own_clock.get_current_time() + timedelta(hours=1)
    await town.gate.signal(ProviderWorkflow.limited, LimitNotice(polecat=askers[0].id, until=until))
    await town.gate.signal(ProviderWorkflow.release, askers[0].id)
    status = await town.gate.query(ProviderWorkflow.current)
    assert status.paused_until == until and status.waiting == [askers[2].id]
    await own_clock.sleep(timedelta(minutes=59))
    assert await town.admitted(askers) == [1, 1, 0]
    await own_clock.sleep(timedelta(minutes=2))
    await admissions_are(town, askers, [1, 1, 1])


async def test_the_slot_of_a_vanished_holder_is_given_on(town: Town, own_clock: WorkflowEnvironment) -> None:
    """A holder ended without giving its slot back (terminated by hand): while another waits, the
    gate finds it gone and admits the one waiting."""
    askers = await town.askers(3)
    await town.ask(*askers)
    await admissions_are(town, askers, [1, 1, 0])
    await askers[0].terminate("ended by hand")
    await own_clock.sleep(RECLAIM_EVERY + timedelta(seconds=5))
    await admissions_are(town, askers[1:], [1, 1])
