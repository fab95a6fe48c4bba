"""What the read commands show, from wherever it is read: resources from their workflows' memos.

`Reads` is where the memos come from: Temporal's HTTP API (`client.http_api.TemporalHttp`, for a
CLI process that must start fast) or the SDK's client (`client.visibility.SdkReads`). Either way a
resource is its workflow's memo, typed by its kind (`resource_from_memo`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol, TypeVar

from client.queries import running
from contracts import names
from crds.common import Resource

R = TypeVar("R", bound=Resource)


class Reads(Protocol):
    async def memos(self, query: str) -> list[Mapping[str, Any]]:
        """The memo of every workflow the visibility `query` lists."""
        ...

    async def running_memo(self, workflow_id: str) -> Mapping[str, Any] | None:
        """The memo of the running workflow `workflow_id` (from its own record: never behind); None
        if none runs."""
        ...

    async def heartbeat(self, workflow_id: str, activities: Collection[str]) -> Any | None:
        """The latest heartbeat details of the running workflow's pending activity of one of
        `activities`; None if there is none."""
        ...


def workflow_id_of(model: type[Resource], namespace: str | None, name: str) -> str:
    """The id of the resource's workflow (a cluster-scoped kind's has no namespace)."""
    return names.workflow_id(model.INFO.kind, namespace if model.INFO.namespaced else None, name)


def resource_from_memo(model: type[R], memo: Mapping[str, Any]) -> R:
    """The resource as its workflow last published it, typed."""
    wire = {
        "apiVersion": model.model_fields["api_version"].default,
        "kind": model.INFO.kind,
        "metadata": memo.get(names.MEMO_METADATA, {}),
        "spec": memo.get(names.MEMO_SPEC, {}),
    }
    if names.MEMO_STATUS in memo:
        wire["status"] = memo[names.MEMO_STATUS]
    return model.model_validate(wire)


async def find(reads: Reads, model: type[R], namespace: str | None, name: str) -> R | None:
    """The live resource of that name; None if there is none."""
    memo = await reads.running_memo(workflow_id_of(model, namespace, name))
    return resource_from_memo(model, memo) if memo is not None else None


async def listed(reads: Reads, model: type[R], namespace: str | None) -> list[R]:
    """Live resources of a kind, in one namespace or (None) all, by namespace and name."""
    query = running(model.INFO.kind, namespace=namespace if model.INFO.namespaced else None)
    found = [resource_from_memo(model, memo) for memo in await reads.memos(query)]
    return sorted(found, key=lambda resource: (resource.namespace, resource.name))
