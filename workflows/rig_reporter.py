"""A polecat telling its rig its phase: the latest phase, in order, one signal at a time.

The rig counts live polecats and knows which names are in use from these
reports. A rig that is gone is not an error for the polecat.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from workflows import attributes
    from workflows.rig import PolecatNote, RigWorkflow


class RigReporter:
    def __init__(self, rig: str, namespace: str, name: str) -> None:
        self._rig = workflow.get_external_workflow_handle_for(
            RigWorkflow.run, attributes.workflow_id("Rig", None, rig)
        )
        self._namespace = namespace
        self._name = name
        self._wanted: str | None = None
        self._offered = 0
        self._sent = 0

    def offer(self, phase: str) -> None:
        self._wanted = phase
        self._offered += 1

    def idle(self) -> bool:
        return self._sent == self._offered

    async def run(self) -> None:
        """Runs for the workflow's life (start it with asyncio.create_task)."""
        while True:
            await workflow.wait_condition(lambda: not self.idle())
            offered = self._offered
            await self._send(self._wanted)
            self._sent = offered

    async def gone(self) -> None:
        """The polecat is deleted: its rig stops counting it and frees its name."""
        await self._send(None)

    async def _send(self, phase: str | None) -> None:
        note = PolecatNote(namespace=self._namespace, name=self._name, phase=phase)
        try:
            await self._rig.signal(RigWorkflow.polecat_changed, note)
        except FailureError:
            workflow.logger.info("rig of polecat %s/%s is gone; not reported", self._namespace, self._name)
