"""The reconcile core: "this resource now looks like X" -> "its workflow exists and knows X".

`gastown apply` uses it on a laptop and the Kubernetes bridge on a cluster.
Each kind that runs on Temporal has one `Controller` entry; adding a kind
adds an entry here, not a code path in the CLI or the watcher.

Reads come from each workflow's memo and search attributes (visibility), so
`get` and `describe` work even while no worker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from client.reads import listed, resource_from_memo
from client.reads import workflow_id_of as workflow_id_of  # its callers find it here too
from client.visibility import SdkReads, describe_running, held_bead_store
from client.webhooks import forget_webhook, store_webhook
from contracts import attributes
from contracts.convoys import PolecatRefused
from contracts.rig import HOLDER_MEMO, HolderKind, RigClaim, is_holder_kind
from contracts.status import StatusTarget
from crds import GROUP, VERSION, BeadStore, Convoy, InvalidResource, Polecat, Refinery, Resource, Rig, Witness
from crds.common import rfc3339
from crds.polecat import change_problems
from workflows.beadstore import BeadStoreInput, BeadStoreWorkflow
from workflows.convoy import ConvoyInput, ConvoyWorkflow
from workflows.polecat import PolecatWorkflow
from workflows.polecat_models import PolecatInput
from workflows.refinery import RefineryInput, RefineryWorkflow
from workflows.rig import RigInput, RigWorkflow
from workflows.witness import WitnessInput, WitnessWorkflow

# Order of apply within one batch: what others refer to comes first.
APPLY_ORDER = ["Rig", "BeadStore", "Refinery", "Witness", "Polecat", "Convoy"]


R = TypeVar("R", bound=Resource)
# Workflow id -> its running workflow's description (None: none runs), as read while a batch was
# checked: applying the batch moments later reads each (its rig's, above all) only once.
Seen = dict[str, WorkflowExecutionDescription | None]


RIG_NOT_FOUND = "not found"


class NotFound(LookupError):
    """No such resource."""


class NoWorker(TimeoutError):
    """No worker took a change in time: the runtime is not (fully) running."""


@dataclass(frozen=True)
class Controller:
    """How one kind lives on Temporal."""

    workflow: type
    # The workflow's start input for a resource; may read other resources (through `Seen`).
    start_input: Callable[[Reconciler, Any, Seen], Awaitable[BaseModel]]
    rig_of: Callable[[Any], str | None]
    bead_of: Callable[[Any], str | None] = lambda resource: None
    # The resource as it may enter a workflow history: its secrets kept aside, replaced by references.
    keep_secrets: Callable[[Reconciler, Any], Any] = lambda reconciler, resource: resource
    # Forget what keep_secrets kept, once the resource is deleted.
    forget_secrets: Callable[[Reconciler, str, str], None] = lambda reconciler, namespace, name: None


async def _polecat_input(reconciler: Reconciler, polecat: Polecat, seen: Seen) -> PolecatInput:
    # One description of the rig gives both the Rig and the BeadStore it holds.
    description = await reconciler.describe(workflow_id_of(Rig, None, polecat.spec.rig), seen)
    if description is None:
        raise NotFound(polecat.spec.rig)
    rig = await _resource_from(Rig, description)
    store = await held_bead_store(reconciler.client, await description.memo())
    return PolecatInput(
        polecat=polecat,
        rig=rig,
        bead_source=store.spec.source if store and store.spec else None,
        status_target=reconciler.status_target(polecat),
    )


async def _rig_input(reconciler: Reconciler, rig: Rig, seen: Seen) -> RigInput:
    return RigInput(rig=rig, status_target=reconciler.status_target(rig))


async def _beadstore_input(reconciler: Reconciler, store: BeadStore, seen: Seen) -> BeadStoreInput:
    rig = await reconciler.claim_rig(store)
    return BeadStoreInput(store=store, rig=rig, status_target=reconciler.status_target(store))


async def _convoy_input(reconciler: Reconciler, convoy: Convoy, seen: Seen) -> ConvoyInput:
    rig = await reconciler.find(Rig, None, convoy.spec.rig_ref, seen) if convoy.spec.rig_ref else None
    return ConvoyInput(convoy=convoy, rig=rig, status_target=reconciler.status_target(convoy))


async def _refinery_input(reconciler: Reconciler, refinery: Refinery, seen: Seen) -> RefineryInput:
    rig = await reconciler.claim_rig(refinery)
    return RefineryInput(refinery=refinery, rig=rig, status_target=reconciler.status_target(refinery))


async def _witness_input(reconciler: Reconciler, witness: Witness, seen: Seen) -> WitnessInput:
    await reconciler.claim_rig(witness)
    return WitnessInput(witness=witness, status_target=reconciler.status_target(witness))


def _witness_secrets(reconciler: Reconciler, witness: Witness) -> Witness:
    """A Slack webhook URL goes to the secret store; the workflow gets a digest of it.

    On a cluster the CR is the store: the notifying activity reads the URL from it.
    """
    safe, url = witness.without_secrets(), witness.webhook_url
    if url is None or url == safe.webhook_url or reconciler.kubernetes:
        return safe  # no URL, only its reference already, or a CR that keeps it
    if reconciler.home is None:
        raise InvalidResource(
            witness.ref, ["spec.notifications.slack.webhookURL: this bridge has nowhere safe to keep it"]
        )
    store_webhook(reconciler.home, _key(witness), url)
    return safe


def _forget_witness_secrets(reconciler: Reconciler, namespace: str, name: str) -> None:
    if reconciler.home is not None:
        forget_webhook(reconciler.home, f"{namespace}/{name}")


CONTROLLERS: dict[str, Controller] = {
    "Rig": Controller(RigWorkflow, _rig_input, rig_of=lambda rig: rig.name),
    "Polecat": Controller(
        PolecatWorkflow,
        _polecat_input,
        rig_of=lambda polecat: polecat.spec.rig,
        bead_of=lambda polecat: polecat.spec.bead_id,
    ),
    "BeadStore": Controller(BeadStoreWorkflow, _beadstore_input, rig_of=lambda store: store.spec.rig_ref),
    "Convoy": Controller(ConvoyWorkflow, _convoy_input, rig_of=lambda convoy: convoy.spec.rig_ref),
    "Refinery": Controller(RefineryWorkflow, _refinery_input, rig_of=lambda refinery: refinery.spec.rig_ref),
    "Witness": Controller(
        WitnessWorkflow,
        _witness_input,
        rig_of=lambda witness: witness.spec.rig_ref,
        keep_secrets=_witness_secrets,
        forget_secrets=_forget_witness_secrets,
    ),
}


def id_of(resource: Resource) -> str:
    return workflow_id_of(type(resource), resource.namespace, resource.name)


class LocalPolecats:
    """A convoy's polecats on a laptop: resources the reconcile core applies, as `gastown apply` does."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler

    async def find(self, namespace: str, name: str) -> Polecat | None:
        return await self.reconciler.find(Polecat, namespace, name)

    async def create(self, polecat: Polecat, owner: Convoy) -> None:
        seen: Seen = {}
        problems = await self.reconciler.problems([polecat], seen)
        if problems:
            raise PolecatRefused("; ".join(problems))
        await self.reconciler.apply(polecat, seen)

    async def delete(self, namespace: str, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self.reconciler.delete(Polecat, namespace, name)


class Reconciler:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        update_timeout: float = 30.0,
        kubernetes: bool = False,
        home: Path | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.update_timeout = update_timeout
        # True for the Kubernetes bridge: resources are CRs, and their status goes back to them.
        self.kubernetes = kubernetes
        # The worker's home on this machine (the embedded runtime): where secrets are kept by reference.
        self.home = home

    def status_target(self, resource: Resource) -> StatusTarget | None:
        if not self.kubernetes:
            return None
        return StatusTarget(
            group=GROUP,
            version=VERSION,
            plural=resource.INFO.plural,
            kind=resource.INFO.kind,
            namespace=resource.namespace if resource.INFO.namespaced else None,
            name=resource.name,
            uid=resource.metadata.uid or "",
        )

    # --- checks before anything is applied -----------------------------------

    async def problems(self, batch: list[Resource], seen: Seen | None = None) -> list[str]:
        """Every reason to refuse the batch, as `<ref>: <field>: <rule>` lines; what it read goes
        into `seen`, for `apply` to reuse.

        Nothing is applied when this is non-empty, so a batch is never half-applied
        for a reason that could be known up front.
        """
        seen = {} if seen is None else seen
        lines = []
        rigs = {resource.name: resource for resource in batch if isinstance(resource, Rig)}
        # BeadStore, Refinery or Witness -> rig -> the one of that kind for that rig in this batch
        held: dict[str, dict[str, Resource]] = {kind: {} for kind in HOLDER_MEMO}
        for resource in batch:
            kind = resource.INFO.kind
            if kind not in CONTROLLERS:
                lines.append(
                    f"{resource.ref}: kind: {kind} is not served by this version of the operator yet"
                )
                continue
            if isinstance(resource, Polecat):
                lines += await self._rig_problems(resource, "spec.rig", resource.spec.rig, rigs, seen)
                # Alone, a change is refused by the workflow's validator as this would (nothing is
                # half-applied); in a batch, before anything of the batch is applied.
                current = (
                    await self.find(Polecat, resource.namespace, resource.name, seen) if batch[1:] else None
                )
                if isinstance(current, Polecat):
                    lines += [f"{resource.ref}: {problem}" for problem in change_problems(current, resource)]
            elif isinstance(resource, BeadStore | Refinery | Witness):
                rig = resource.spec.rig_ref
                # One description of the rig says both that it exists and who holds it.
                description = await self.describe(workflow_id_of(Rig, None, rig), seen)
                if description is None and rig not in rigs:
                    lines.append(_no_rig(resource, "spec.rigRef", rig))
                in_batch = held[kind].get(rig)
                memo = await description.memo() if description else {}
                assert is_holder_kind(kind)
                holder, alive = await self._rig_holder(kind, memo)
                other = _key(in_batch) if in_batch else (holder if alive else None)
                if other is not None and other != _key(resource):
                    lines.append(
                        f"{resource.ref}: spec.rigRef: Rig {rig!r} already has a {kind} ({other}); "
                        "a rig has one"
                    )
                held[kind][rig] = resource
            elif isinstance(resource, Convoy) and resource.spec.rig_ref:
                lines += await self._rig_problems(resource, "spec.rigRef", resource.spec.rig_ref, rigs, seen)
        return lines

    async def _rig_problems(
        self, resource: Resource, field: str, name: str, batch: dict[str, Rig], seen: Seen
    ) -> list[str]:
        """The rig must exist (or come in the same batch); a polecat's bead must carry its prefix."""
        rig = batch.get(name) or await self.find(Rig, None, name, seen)
        if rig is None:
            return [_no_rig(resource, field, name)]
        prefix = rig.spec.beads_prefix
        if isinstance(resource, Polecat):
            beads = {"spec.beadID": resource.spec.bead_id}
        elif isinstance(resource, Convoy):
            beads = {f"spec.trackedBeads[{i}]": bead for i, bead in enumerate(resource.spec.tracked_beads)}
        else:
            beads = {}
        return [
            f"{resource.ref}: {where}: must carry rig {name}'s beadsPrefix ({prefix}-...) (got {bead!r})"
            for where, bead in beads.items()
            if prefix and bead and not bead.startswith(f"{prefix}-")
        ]

    async def _rig_holder(self, kind: HolderKind, rig_memo: Mapping[str, Any]) -> tuple[str | None, bool]:
        """Which `kind` (BeadStore, Refinery or Witness) the rig's memo says holds it, as `<namespace>/<name>`,
        and whether that resource still exists."""
        holder = rig_memo.get(HOLDER_MEMO[kind])
        if not isinstance(holder, str):
            return None, False
        namespace, name = holder.split("/", 1)
        alive = await describe_running(self.client, attributes.workflow_id(kind, namespace, name))
        return holder, alive is not None

    async def claim_rig(self, resource: BeadStore | Refinery | Witness) -> Rig:
        """Make `resource` its rig's one BeadStore, Refinery or Witness, or refuse (InvalidResource) if it has another.

        Returns the rig (one description of it serves both); NotFound if there is none.
        """
        kind, rig = resource.INFO.kind, resource.spec.rig_ref
        assert is_holder_kind(kind)  # the type of `resource` says so
        description = await describe_running(self.client, workflow_id_of(Rig, None, rig))
        if description is None:
            raise NotFound(rig)
        holder, alive = await self._rig_holder(kind, await description.memo())
        handle = self.client.get_workflow_handle(workflow_id_of(Rig, None, rig))
        try:
            await handle.execute_update(
                RigWorkflow.claim,
                RigClaim(kind=kind, holder=_key(resource), replaces=None if alive else holder),
            )
        except WorkflowUpdateFailedError as error:
            raise InvalidResource(resource.ref, [f"spec.rigRef: {_refusal(error)}"]) from None
        return await _resource_from(Rig, description)

    # --- writes ---------------------------------------------------------------

    async def apply(self, resource: Resource, seen: Seen | None = None) -> str:
        """Start the resource's workflow or hand it the new spec: created, configured or unchanged.
        `seen`: what `problems` read of this batch, not read again."""
        controller = CONTROLLERS[resource.INFO.kind]
        resource = controller.keep_secrets(self, resource)
        if resource.metadata.uid is None:
            resource.metadata.uid = str(uuid.uuid4())
        if resource.metadata.creation_timestamp is None:
            resource.metadata.creation_timestamp = datetime.now(UTC)
        start = WithStartWorkflowOperation(
            controller.workflow.run,  # type: ignore[attr-defined]
            await controller.start_input(self, resource, {} if seen is None else seen),
            id=id_of(resource),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=attributes.initial(
                resource.INFO.kind,
                resource.namespace if resource.INFO.namespaced else "",
                controller.rig_of(resource),
                controller.bead_of(resource),
                resource.INFO.initial_phase,
            ),
            memo={
                attributes.MEMO_METADATA: _metadata_memo(resource),
                attributes.MEMO_SPEC: resource.spec.to_wire(),  # type: ignore[attr-defined]
            },
        )
        try:
            outcome: str = await asyncio.wait_for(
                self.client.execute_update_with_start_workflow(
                    controller.workflow.apply,  # type: ignore[attr-defined]
                    resource,
                    start_workflow_operation=start,
                ),
                self.update_timeout,
            )
        except TimeoutError:
            raise NoWorker(
                f"{resource.ref}: no worker took the change within {self.update_timeout:.0f}s "
                f"(task queue {self.task_queue}); is a worker running? `gastown up` starts one"
            ) from None
        except WorkflowUpdateFailedError as error:
            raise InvalidResource(resource.ref, [_refusal(error)]) from None
        if seen is not None:  # what this changed is read afresh: itself, and the rig it claimed
            seen.pop(id_of(resource), None)
            if is_holder_kind(resource.INFO.kind):
                seen.pop(workflow_id_of(Rig, None, controller.rig_of(resource) or ""), None)
        return outcome

    async def delete(
        self, model: type[Resource], namespace: str | None, name: str, timeout: float = 60.0
    ) -> None:
        """Stop the resource's work and end its workflow; NotFound if there is none."""
        handle = await self.running(model, namespace, name)
        await handle.signal("delete")
        await asyncio.wait_for(handle.result(), timeout)
        CONTROLLERS[model.INFO.kind].forget_secrets(self, namespace or "", name)

    async def signal(
        self, model: type[Resource], namespace: str | None, name: str, signal: str, *args: Any
    ) -> None:
        handle = await self.running(model, namespace, name)
        await handle.signal(signal, *args)

    async def update(
        self, model: type[Resource], namespace: str | None, name: str, update: str, *args: Any
    ) -> Any:
        """Send an update to the resource's workflow; NotFound if none runs, InvalidResource if it refuses."""
        handle = await self.running(model, namespace, name)
        try:
            return await handle.execute_update(update, args=args)
        except WorkflowUpdateFailedError as error:
            raise InvalidResource(model.ref_of(namespace, name), [_refusal(error)]) from None

    # --- reads ----------------------------------------------------------------

    async def describe(
        self, workflow_id: str, seen: Seen | None = None
    ) -> WorkflowExecutionDescription | None:
        """The running workflow's description (None: none runs), from `seen` if read there already."""
        if seen is None:
            return await describe_running(self.client, workflow_id)
        if workflow_id not in seen:
            seen[workflow_id] = await describe_running(self.client, workflow_id)
        return seen[workflow_id]

    async def find(
        self, model: type[R], namespace: str | None, name: str, seen: Seen | None = None
    ) -> R | None:
        description = await self.describe(workflow_id_of(model, namespace, name), seen)
        return await _resource_from(model, description) if description else None

    async def get(self, model: type[R], namespace: str | None, name: str) -> R:
        resource = await self.find(model, namespace, name)
        if resource is None:
            raise NotFound(name)
        return resource

    async def list(self, model: type[R], namespace: str | None) -> list[R]:
        """Live resources of a kind, in one namespace or (None) all, by name."""
        return await listed(SdkReads(self.client), model, namespace)

    async def running(
        self, model: type[Resource], namespace: str | None, name: str
    ) -> WorkflowHandle[Any, Any]:
        """The handle of the resource's running workflow; NotFound if there is none."""
        workflow_id = workflow_id_of(model, namespace, name)
        if await describe_running(self.client, workflow_id) is None:
            raise NotFound(name)
        return self.client.get_workflow_handle(workflow_id)


def _no_rig(resource: Resource, field: str, rig: str) -> str:
    return f"{resource.ref}: {field}: Rig {rig!r} {RIG_NOT_FOUND}"


def _refusal(error: WorkflowUpdateFailedError) -> str:
    """Why a workflow refused an update, in its own words."""
    cause = error.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


def _key(resource: Resource) -> str:
    return f"{resource.namespace}/{resource.name}"


def _metadata_memo(resource: Resource) -> dict[str, Any]:
    meta = resource.metadata
    memo: dict[str, Any] = {"name": meta.name, "uid": meta.uid}
    if resource.INFO.namespaced:
        memo["namespace"] = resource.namespace
    if meta.creation_timestamp is not None:
        memo["creationTimestamp"] = rfc3339(meta.creation_timestamp)
    if meta.labels:
        memo["labels"] = meta.labels
    return memo


async def _resource_from(model: type[R], execution: Any) -> R:
    """The resource as its workflow last published it (memo), typed."""
    return resource_from_memo(model, await execution.memo())
