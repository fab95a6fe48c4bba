"""The host a worker runs on, for a workflow that waits for it (`contracts.hosts`)."""

from __future__ import annotations

from temporalio import activity

from contracts import hosts as contract


class HostActivities(contract.HostActivities):
    def __init__(self, host: str) -> None:
        self.host = host

    @activity.defn(name=contract.HERE)
    async def here(self) -> str:
        return self.host
