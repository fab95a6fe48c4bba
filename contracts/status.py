"""Publishing a resource's status: where its CR is, and what is sent there.

A workflow offers a `StatusUpdate`; the publishing activity writes it to the
CR's status subresource and posts its Events.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from temporalio import activity

PUBLISH_STATUS = "kube.publish_status"


class StatusTarget(BaseModel):
    """Where a resource lives in Kubernetes."""

    group: str
    version: str
    plural: str
    kind: str
    namespace: str | None
    name: str
    uid: str


class EventNote(BaseModel):
    reason: str
    message: str
    type: str = "Normal"  # or Warning


class StatusUpdate(BaseModel):
    target: StatusTarget
    status: dict[str, Any]
    observed_generation: int | None = None
    events: list[EventNote] = []


class KubeActivities:
    @activity.defn(name=PUBLISH_STATUS)
    async def publish_status(self, update: StatusUpdate) -> None:
        """Write the status subresource and post the Events. A resource that is gone is done."""
        raise NotImplementedError
