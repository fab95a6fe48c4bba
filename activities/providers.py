"""The provider gate's side effects: asking a provider's workflow for a slot, finding vanished holders."""

from __future__ import annotations

import os
from collections.abc import Mapping

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from client.visibility import describe_running
from contracts import attributes
from contracts import providers as contract
from contracts.providers import Admission, AdmitRequest, Ask, ProviderInput, ProviderStatus, key_id
from launch.agents import PROVIDERS


class ProviderActivities(contract.ProviderActivities):
    def __init__(
        self,
        client: Client,
        task_queue: str,
        limits: dict[str, int],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.limits = limits  # GASTOWN_PROVIDER_LIMITS: the gated providers and their caps
        self.environ = os.environ if environ is None else environ  # where this worker's keys are

    @activity.defn(name=contract.ADMIT)
    async def admit(self, request: AdmitRequest) -> Admission:
        cap = self.limits.get(request.provider)
        if cap is None:
            return Admission(gated=False)
        status = ProviderStatus(provider=request.provider, key_id=self._key_id(request), cap=cap)
        # Signal-with-start: the gate's one workflow gets the ask, started by the first asker.
        await self.client.start_workflow(
            "Provider",
            ProviderInput(status=status),
            id=attributes.workflow_id("Provider", None, status.gate),
            task_queue=self.task_queue,
            start_signal="ask",
            start_signal_args=[Ask(polecat=request.polecat, cap=cap)],
            search_attributes=TypedSearchAttributes([SearchAttributePair(attributes.KIND, "Provider")]),
        )
        return Admission(gated=True, cap=cap, gate=status.gate)

    def _key_id(self, request: AdmitRequest) -> str | None:
        """Which key the agent's requests go with: its pod's secret, else the key this worker holds."""
        if request.in_pod:
            return None if request.key_ref is None else key_id(request.key_ref)
        variable = PROVIDERS[request.provider].key_variable if request.provider in PROVIDERS else None
        key = self.environ.get(variable) if variable else None
        return key_id(key) if key else None

    @activity.defn(name=contract.RECLAIM)
    async def reclaim(self, holders: list[str]) -> list[str]:
        return [holder for holder in holders if await describe_running(self.client, holder) is None]
