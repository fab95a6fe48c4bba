"""The Provider workflow: one model provider's gate for the whole town (`provider/<name>`).

Policy only: who holds a slot, who waits (first come, first served), and
until when admissions are paused after a rate limit. Polecats `ask` (through
the `providers.admit` activity, which starts this workflow when need be),
are sent `admitted`, and `release` their slot when their agent stops; one
that met a long limit sends `limited`, and no one is admitted until then (a
durable timer). A holder whose workflow is gone without releasing (ended by
hand in the Temporal UI, say) is found by the `providers.reclaim` activity
while others wait, and its slot given on.

Not an Entity: a provider has no spec and no CR (its cap is the workers'
setting), so it keeps only the status in its memo that `gastown get
providers` reads.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from contracts import attributes
    from contracts.providers import Ask, LimitNotice, ProviderActivities, ProviderInput, ProviderStatus
    from workflows.history import continue_as_new, history_full

# While someone waits and every slot is held, how often the holders are checked for vanished ones.
RECLAIM_EVERY = timedelta(minutes=1)


@workflow.defn(name="Provider")
class ProviderWorkflow:
    @workflow.init
    def __init__(self, input: ProviderInput) -> None:
        self.status = input.status
        self.changed = False  # by a signal since the loop last looked
        self.published: dict[str, object] | None = None

    @workflow.signal
    def ask(self, ask: Ask) -> None:
        self.status.cap = ask.cap
        if ask.polecat not in self.status.running and ask.polecat not in self.status.waiting:
            self.status.waiting.append(ask.polecat)
        self.changed = True

    @workflow.signal
    def release(self, polecat: str) -> None:
        for held in (self.status.running, self.status.waiting):
            if polecat in held:
                held.remove(polecat)
        self.changed = True

    @workflow.signal
    def limited(self, notice: LimitNotice) -> None:
        if self.status.paused_until is None or notice.until > self.status.paused_until:
            self.status.paused_until = notice.until
        self.changed = True

    @workflow.query
    def current(self) -> ProviderStatus:
        return self.status

    @workflow.run
    async def run(self, input: ProviderInput) -> None:
        while True:
            self.changed = False  # what a signal changes while the loop admits is looked at again
            if self.status.paused_until is not None and self.status.paused_until <= workflow.now():
                self.status.paused_until = None
            await self._admit()
            wire = self.status.model_dump(mode="json")
            if wire != self.published:
                self.published = wire
                workflow.upsert_memo({attributes.MEMO_STATUS: wire})
            if history_full(input.history_limit):
                await workflow.wait_condition(workflow.all_handlers_finished)
                continue_as_new(input.model_copy(update={"status": self.status}))
            if not self.changed:
                await self._wait()

    async def _admit(self) -> None:
        """Slots to the first waiting, while there are slots and admissions are not paused."""
        status = self.status
        admitted = []
        while status.waiting and len(status.running) < status.cap and status.paused_until is None:
            polecat = status.waiting.pop(0)
            status.running.append(polecat)
            admitted.append(polecat)

        async def tell(polecat: str) -> None:
            try:
                await workflow.get_external_workflow_handle(polecat).signal("admitted", self.status.gate)
            except FailureError:  # gone since: its slot is free again
                self.release(polecat)

        await asyncio.gather(*(tell(polecat) for polecat in admitted))

    async def _wait(self) -> None:
        """Until a signal changes something, the pause ends, or it is time to look for vanished holders."""
        status = self.status
        timeouts = []
        if status.paused_until is not None:
            timeouts.append((status.paused_until - workflow.now()).total_seconds())
        full = status.waiting and len(status.running) >= status.cap
        if full:
            timeouts.append(RECLAIM_EVERY.total_seconds())
        try:
            await workflow.wait_condition(lambda: self.changed, timeout=min(timeouts) if timeouts else None)
        except TimeoutError:
            if full and self.status.waiting and len(self.status.running) >= self.status.cap:
                await self._reclaim()

    async def _reclaim(self) -> None:
        gone = await workflow.execute_activity_method(
            ProviderActivities.reclaim,
            list(self.status.running),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        for polecat in gone:
            self.release(polecat)
