"""A convoy's side effects: spawning its polecats as real Polecat resources, watching them, removing them.

Polecats are created where the convoy lives: on a laptop through the reconcile
core (as `gastown apply` would), on a cluster as Polecat objects in the API
server, owned by the convoy, which the bridge then starts. Either way they
are resources a person can list, and the same `PolecatStore` interface.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Protocol, cast

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.beads import BeadSourceError, find_beads
from activities.heartbeats import heartbeating
from activities.kube import KubeConnection
from activities.watching import poll_until_changed
from client.queries import running
from client.usage import live_usages
from client.visibility import SdkReads
from contracts import attributes
from contracts import convoys as contract
from contracts.convoys import (
    ConvoySnapshot,
    PolecatRefused,
    PolecatSeen,
    RemoveRequest,
    SpawnRequest,
    WatchRequest,
    holder_prefix,
)
from contracts.rig import ALLOCATE_NAME, NameRequest
from crds import GROUP, VERSION
from crds.convoy import CONVOY_LABEL, Convoy
from crds.polecat import Polecat, PolecatSpec, PolecatTemplate
from crds.usage import Usage

BEAD_POLL = 5.0  # seconds between reads of the bead store (closed beads)
SPEND_POLL = 5.0  # seconds between reads of what a budgeted convoy's working polecats spent


class PolecatStore(Protocol):
    """Where Polecat resources live: the API server on a cluster, the reconcile core on a laptop."""

    async def find(self, namespace: str, name: str) -> Polecat | None: ...

    async def create(self, polecat: Polecat, owner: Convoy) -> None:
        """Create it, or adopt it if an earlier attempt did; refuse it with PolecatRefused."""

    async def delete(self, namespace: str, name: str) -> None:
        """Delete it (which stops its agent); one already gone is done."""


async def allocate_name(rig: WorkflowHandle[Any, Any], holder: str, taken: list[str]) -> str:
    """A polecat name from the rig for `holder`.

    The server keeps at most a few updates of one workflow in flight (10 on the dev server) and
    refuses more; a convoy spawning many polecats at once asks again shortly, not as a failure.
    Under such load the server may also abort an update it took (UNAVAILABLE, "workflow update was
    aborted") after the client's own retries: asking again is safe, as a holder always gets its name.
    """
    delay = 0.05
    while True:
        try:
            name: str = await rig.execute_update(
                ALLOCATE_NAME, NameRequest(holder=holder, taken=taken), result_type=str
            )
            return name
        except RPCError as error:
            if error.status not in (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE):
                raise
        await asyncio.sleep(delay * (1 + random.random()))  # jitter: many spawns do not retry in step
        delay = min(delay * 2, 2.0)


def spawned_polecat(convoy: Convoy, name: str, bead_id: str) -> Polecat:
    """The Polecat a convoy spawns for a bead: its template, on its rig, Working."""
    template = convoy.spec.polecat_template or PolecatTemplate()
    spec = PolecatSpec.model_validate(
        {**template.to_wire(), "rig": convoy.spec.rig_ref, "beadID": bead_id, "desiredState": "Working"}
    )
    return Polecat.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": convoy.namespace,
                "labels": {CONVOY_LABEL: convoy.name},
            },
            "spec": spec.to_wire(),
        }
    )


class ConvoyActivities(contract.ConvoyActivities):
    def __init__(self, client: Client, local: PolecatStore, connection: KubeConnection) -> None:
        self.client = client
        self.local = local
        self.connection = connection

    def _store(self, kubernetes: bool) -> PolecatStore:
        return KubePolecats(self.connection) if kubernetes else self.local

    @activity.defn(name=contract.SPAWN)
    @heartbeating
    async def spawn(self, request: SpawnRequest) -> str:
        convoy = request.convoy
        rig = self.client.get_workflow_handle(attributes.workflow_id("Rig", None, convoy.spec.rig_ref or ""))
        store = self._store(request.kubernetes)
        holder = f"{holder_prefix(convoy)}{request.bead_id}"
        taken: list[str] = []
        while True:
            name = await allocate_name(rig, holder, taken)
            existing = await store.find(convoy.namespace, name)
            if existing is None:
                try:
                    await store.create(spawned_polecat(convoy, name, request.bead_id), convoy)
                except PolecatRefused as refused:
                    raise ApplicationError(str(refused), type="PolecatRefused", non_retryable=True) from None
                return name
            ours = existing.metadata.labels.get(CONVOY_LABEL) == convoy.name
            if ours and existing.spec.bead_id == request.bead_id:
                return name  # created by an earlier attempt of this activity
            taken.append(name)  # someone else's polecat has that name here

    @activity.defn(name=contract.REMOVE)
    async def remove(self, request: RemoveRequest) -> None:
        store = self._store(request.kubernetes)

        async def one(name: str) -> None:
            await store.delete(request.namespace, name)
            activity.heartbeat(name)

        await asyncio.gather(*(one(name) for name in request.names))

    @activity.defn(name=contract.WATCH)
    async def watch(self, request: WatchRequest) -> ConvoySnapshot:
        beads_read_at = spend_read_at = 0.0
        closed: list[str] = []
        bead_error: str | None = None
        budget_spent: str | None = None

        async def look() -> ConvoySnapshot:
            nonlocal beads_read_at, spend_read_at, closed, bead_error, budget_spent
            if time.monotonic() - beads_read_at >= BEAD_POLL and request.rig:
                closed, bead_error = await self._closed(request)
                beads_read_at = time.monotonic()
            polecats = await self._polecats(request)
            if request.budget and time.monotonic() - spend_read_at >= SPEND_POLL:
                budget_spent = request.budget.exceeded(await self._spent(request.namespace, polecats))
                spend_read_at = time.monotonic()
            return ConvoySnapshot(
                polecats=polecats, closed=closed, bead_error=bead_error, budget_spent=budget_spent
            )

        return await poll_until_changed(
            look, lambda snapshot: snapshot.digest() != request.seen, poll=request.poll, limit=request.limit
        )

    async def _polecats(self, request: WatchRequest) -> list[PolecatSeen]:
        """One visibility query for all of them, whatever their number."""
        query = running("Polecat", namespace=request.namespace, rig=request.rig or None)
        wanted = set(request.beads)
        seen = []
        async for execution in self.client.list_workflows(query):
            found = execution.typed_search_attributes
            bead = found.get(attributes.BEAD)
            if bead in wanted:
                memo = await execution.memo()
                status = memo.get(attributes.MEMO_STATUS) or {}
                failed = [
                    c for c in status.get("conditions", []) if c["type"] == "Failed" and c["status"] == "True"
                ]
                seen.append(
                    PolecatSeen(
                        name=execution.id.rsplit("/", 1)[-1],
                        bead_id=bead,
                        phase=found.get(attributes.PHASE) or "Pending",
                        usage=status.get("usage"),
                        uid=(memo.get(attributes.MEMO_METADATA) or {}).get("uid"),
                        restarts=status.get("restarts", 0),
                        reason=failed[0].get("reason") if failed else None,
                    )
                )
        return sorted(seen, key=lambda polecat: (polecat.bead_id, polecat.name))

    async def _spent(self, namespace: str, polecats: list[PolecatSeen]) -> Usage:
        """What the polecats have spent: the working ones' live figures, the others' last."""
        working = [polecat for polecat in polecats if polecat.phase == "Working"]
        live = await live_usages(SdkReads(self.client), [(namespace, polecat.name) for polecat in working])
        latest = {polecat.name: usage for polecat, usage in zip(working, live, strict=True) if usage}
        return Usage.total(latest.get(polecat.name, polecat.usage) for polecat in polecats)

    async def _closed(self, request: WatchRequest) -> tuple[list[str], str | None]:
        try:
            beads = await find_beads(self.client, request.rig or "", request.checkout, request.beads)
        except BeadSourceError as error:
            return [], str(error)
        return sorted(bead.id for bead in beads or [] if bead.status == "closed"), None


class KubePolecats:
    """Polecat objects in the Kubernetes API server (the bridge starts their workflows)."""

    def __init__(self, connection: KubeConnection) -> None:
        self.connection = connection

    async def find(self, namespace: str, name: str) -> Polecat | None:
        async with self.connection.api() as api:
            try:
                found = await client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, namespace, Polecat.INFO.plural, name
                )
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
        return Polecat.model_validate(cast(dict[str, Any], found))

    async def create(self, polecat: Polecat, owner: Convoy) -> None:
        body = polecat.to_wire()
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Convoy",
                "name": owner.name,
                "uid": owner.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        async with self.connection.api() as api:
            try:
                await client.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, polecat.namespace, Polecat.INFO.plural, body
                )
            except ApiException as error:
                if error.status == 422:  # the API server's admission said no
                    raise PolecatRefused(f"{polecat.ref}: {error.reason}: {error.body}") from None
                if error.status != 409:  # 409: created by an earlier attempt, adopted
                    raise

    async def delete(self, namespace: str, name: str) -> None:
        async with self.connection.api() as api:
            try:
                await client.CustomObjectsApi(api).delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, Polecat.INFO.plural, name
                )
            except ApiException as error:
                if error.status != 404:
                    raise
