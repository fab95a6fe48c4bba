"""Reading what Temporal knows of our workflows: a running workflow's own record, and its rig's polecats.

A description comes from the workflow's own record, so it is never behind; a
count or a list comes from visibility, one query however many workflows it covers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from client.queries import running
from contracts import attributes
from contracts.providers import ProviderStatus
from crds.beadstore import BeadStoreSpec


async def describe_running(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The workflow's description if it is running; None if it ended or never was."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description if description.status == WorkflowExecutionStatus.RUNNING else None


class SdkReads:
    """The reads of `client.reads.Reads`, through the SDK's client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def memos(self, query: str) -> list[Mapping[str, Any]]:
        return [await execution.memo() async for execution in self.client.list_workflows(query)]

    async def running_memo(self, workflow_id: str) -> Mapping[str, Any] | None:
        return await running_memo(self.client, workflow_id)

    async def heartbeat(self, workflow_id: str, activities: Collection[str]) -> Any | None:
        description = await describe_running(self.client, workflow_id)
        for pending in description.raw_description.pending_activities if description else []:
            if pending.activity_type.name in activities and pending.heartbeat_details.payloads:
                return (await self.client.data_converter.decode(pending.heartbeat_details.payloads))[0]
        return None


async def provider_gates(client: Client) -> list[ProviderStatus]:
    """Every provider's gate (`workflows.provider`), as its memo shows it; one visibility query."""
    gates = []
    async for execution in client.list_workflows(running("Provider")):
        status = (await execution.memo()).get(attributes.MEMO_STATUS)
        if status:
            gates.append(ProviderStatus.model_validate(status))
    return sorted(gates, key=lambda gate: gate.gate)


class RigBeadStore(BaseModel):
    key: str  # `<namespace>/<name>`
    spec: BeadStoreSpec | None  # None: the rig's claim is stale, that BeadStore is gone


async def rig_bead_store(client: Client, rig: str) -> RigBeadStore | None:
    """The BeadStore the rig holds (one at most), read from the rig's and the store's workflows.

    Descriptions, not a visibility query: they are never behind.
    """
    rig_memo = await running_memo(client, attributes.workflow_id("Rig", None, rig))
    return await held_bead_store(client, rig_memo) if rig_memo else None


async def held_bead_store(client: Client, rig_memo: Mapping[str, Any]) -> RigBeadStore | None:
    """The BeadStore a rig's memo says the rig holds (for a caller that has described the rig)."""
    claim = rig_memo.get(attributes.MEMO_BEAD_STORE)
    if not isinstance(claim, str):
        return None
    namespace, name = claim.split("/", 1)
    store_memo = await running_memo(client, attributes.workflow_id("BeadStore", namespace, name))
    spec = BeadStoreSpec.model_validate(store_memo[attributes.MEMO_SPEC]) if store_memo else None
    return RigBeadStore(key=claim, spec=spec)


async def running_memo(client: Client, workflow_id: str) -> Mapping[str, Any] | None:
    description = await describe_running(client, workflow_id)
    return await description.memo() if description else None
