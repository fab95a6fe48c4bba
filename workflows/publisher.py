"""Sending a Kubernetes-backed resource's status to its CR: in order, bursts coalesced.

A workflow offers each new status; one coroutine sends the latest with one
activity at a time, so a slow API server never reorders statuses or piles up
activities, and the Events of every transition are still all posted.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts import attributes
    from contracts.status import EventNote, KubeActivities, StatusTarget, StatusUpdate
    from crds.common import ApiModel

MAX_PENDING_EVENTS = 20


class StatusPublisher:
    def __init__(self, target: StatusTarget | None) -> None:
        self.target = target
        self._wanted: StatusUpdate | None = None
        self._offered = 0
        self._sent = 0
        self._task: asyncio.Task[None] | None = None

    def publish(self, status: ApiModel, generation: int | None, event: EventNote | None) -> None:
        """The status where people look: the memo (`gastown get`), and the CR when there is one."""
        wire = status.to_wire()
        workflow.upsert_memo({attributes.MEMO_STATUS: wire})
        self.offer(wire, generation, event)

    def offer(self, status: dict[str, Any], generation: int | None, event: EventNote | None) -> None:
        if self.target is None:
            return
        events = [*self._wanted.events, event] if self._wanted else [event]
        self._wanted = StatusUpdate(
            target=self.target,
            status=status,
            observed_generation=generation,
            events=[note for note in events if note is not None][-MAX_PENDING_EVENTS:],
        )
        self._offered += 1

    def idle(self) -> bool:
        return self._sent == self._offered

    def start(self) -> None:
        """Start sending, for the run's life (the first thing a workflow's run does)."""
        self._task = asyncio.create_task(self._send())

    def stop(self) -> None:
        """Stop sending (the run continues as new, idle)."""
        if self._task is not None:
            self._task.cancel()

    async def _send(self) -> None:
        while True:
            await workflow.wait_condition(lambda: not self.idle())
            offered, update = self._offered, self._wanted
            assert update is not None
            self._wanted = update.model_copy(update={"events": []})
            await workflow.execute_activity_method(
                KubeActivities.publish_status,
                update,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
            self._sent = offered
