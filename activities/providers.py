"""The provider gate's side effects: asking a provider's workflow for a slot, finding vanished holders."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from client.visibility import describe_running
from contracts import attributes
from contracts import providers as contract
from contracts.providers import Admission, AdmitRequest, Ask, ProviderInput, ProviderStatus


class ProviderActivities(contract.ProviderActivities):
    def __init__(self, client: Client, task_queue: str, limits: dict[str, int]) -> None:
        self.client = client
        self.task_queue = task_queue
        self.limits = limits  # GASTOWN_PROVIDER_LIMITS: the gated providers and their caps

    @activity.defn(name=contract.ADMIT)
    async def admit(self, request: AdmitRequest) -> Admission:
        cap = self.limits.get(request.provider)
        if cap is None:
            return Admission(gated=False)
        # Signal-with-start: the provider's one workflow gets the ask, started by the first asker.
        await self.client.start_workflow(
            "Provider",
            ProviderInput(status=ProviderStatus(provider=request.provider, cap=cap)),
            id=attributes.workflow_id("Provider", None, request.provider),
            task_queue=self.task_queue,
            start_signal="ask",
            start_signal_args=[Ask(polecat=request.polecat, cap=cap)],
            search_attributes=TypedSearchAttributes([SearchAttributePair(attributes.KIND, "Provider")]),
        )
        return Admission(gated=True, cap=cap)

    @activity.defn(name=contract.RECLAIM)
    async def reclaim(self, holders: list[str]) -> list[str]:
        return [holder for holder in holders if await describe_running(self.client, holder) is None]
