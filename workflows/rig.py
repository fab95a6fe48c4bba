"""The Rig workflow: a project workspace that polecats read, `rig/<name>`.

It holds the spec as applied and says whether the checkout is usable
(phase Ready or NotReady, with the reason). It runs until the Rig is deleted.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.git import GitActivities
    from activities.kube import EventNote, StatusTarget
    from crds.common import set_condition
    from crds.rig import Rig, RigStatus
    from workflows import attributes
    from workflows.history import HISTORY_LIMIT, history_full
    from workflows.publisher import StatusPublisher


class RigInput(BaseModel):
    rig: Rig
    status: RigStatus | None = None
    history_limit: int = HISTORY_LIMIT
    status_target: StatusTarget | None = None


@workflow.defn(name="Rig")
class RigWorkflow:
    @workflow.init
    def __init__(self, input: RigInput) -> None:
        self.rig = input.rig
        self.status = input.status or RigStatus()
        self.fresh = input.status is None
        self.checked_spec = None if input.status is None else input.rig.spec
        self.deleted = False
        self.publisher = StatusPublisher(input.status_target)

    @workflow.update
    def apply(self, rig: Rig) -> str:
        rig.metadata.uid = self.rig.metadata.uid
        outcome = "created" if self.fresh else ("unchanged" if rig.spec == self.rig.spec else "configured")
        self.fresh = False
        self.rig = rig
        workflow.upsert_memo({attributes.MEMO_SPEC: rig.spec.to_wire()})
        return outcome

    @workflow.signal
    def delete(self) -> None:
        self.deleted = True

    @workflow.query
    def current(self) -> Rig:
        return self.rig.model_copy(update={"status": self.status})

    @workflow.run
    async def run(self, input: RigInput) -> None:
        publishing = asyncio.create_task(self.publisher.run())
        while True:
            await workflow.wait_condition(
                lambda: (
                    self.deleted or self.checked_spec != self.rig.spec or history_full(input.history_limit)
                )
            )
            if self.deleted:
                return
            if self.checked_spec == self.rig.spec:  # only the history is full
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and self.publisher.idle()
                )
                publishing.cancel()
                workflow.continue_as_new(input.model_copy(update={"rig": self.rig, "status": self.status}))
            spec = self.rig.spec
            problem = await workflow.execute_activity_method(
                GitActivities.check_rig,
                spec,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            self.checked_spec = spec
            now = workflow.now()
            self.status.phase = "NotReady" if problem else "Ready"
            self.status.message = problem or "checkout ready"
            self.status.conditions = set_condition(
                self.status.conditions,
                "Ready",
                "False" if problem else "True",
                "CheckoutUnusable" if problem else "CheckoutReady",
                self.status.message,
                now,
            )
            workflow.upsert_search_attributes([attributes.PHASE.value_set(self.status.phase)])
            workflow.upsert_memo({attributes.MEMO_STATUS: self.status.to_wire()})
            reason = "CheckoutUnusable" if problem else "CheckoutReady"
            note = EventNote(
                reason=reason, message=self.status.message, type="Warning" if problem else "Normal"
            )
            self.publisher.offer(self.status.to_wire(), self.rig.metadata.generation, note)
