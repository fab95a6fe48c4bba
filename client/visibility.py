"""Reading what Temporal knows of our workflows: a running workflow's own record, and its rig's polecats.

A description comes from the workflow's own record, so it is never behind; a
count or a list comes from visibility, one query however many workflows it covers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from contracts import attributes
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


def rig_polecats(rig: str, *phases: str) -> str:
    """The visibility query of a rig's running polecats (in one of `phases`, if any are given)."""
    query = f"{attributes.KIND.name} = 'Polecat' AND {attributes.RIG.name} = '{rig}' AND ExecutionStatus = 'Running'"
    if phases:
        listed = ", ".join(f"'{phase}'" for phase in phases)
        query += f" AND {attributes.PHASE.name} IN ({listed})"
    return query


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
