"""Two or more bridges, one active: kopf's peering, with the oldest bridge the active one.

kopf's peering (its `ClusterKopfPeering` / `KopfPeering` resources, deploy/peering.yaml) is
what kopf already does against any API server: each bridge writes a keep-alive with its
priority into one peering object; a bridge that sees a live one of higher priority pauses,
and resumes once that one's keep-alive expires. It needs nothing of ours on the server, and
our fake API server speaks it as a real one does. A `coordination.k8s.io` Lease would need a
leader-election loop of our own around kopf's pause and resume, which kopf does not expose.

Two choices of ours:
- **Priority by age.** The priority falls with the start time (milliseconds, and a random
  tie-break), so a bridge that starts while another runs waits as the standby, and a
  restarted one never takes the work back from the one that took over. Equal priorities
  would pause every bridge (kopf's rule), which the tie-break rules out.
- **Mandatory peering.** A bridge starts paused and acts only once the peering object says it
  is the oldest alive: two bridges are never active at once at start-up. The bridge creates
  its peering object when there is none.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Collection
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from activities.kube import KubeConnection

NAME = "gastown"
GROUP, VERSION = "kopf.dev", "v1"
# Seconds a bridge's keep-alive holds. A killed active bridge is taken over after at most this
# (kopf renews 5-10 s before it runs out), plus the standby's resume of every resource.
LIFETIME = 15


def seniority() -> int:
    """This bridge's peering priority: higher the earlier it started."""
    started = int(time.time() * 1000)
    return (10**13 - started) * 1000 + random.randrange(1000)


async def ensure_peering(connection: KubeConnection, namespaces: Collection[str]) -> None:
    """The peering object the bridges share: cluster-wide, or one in each watched namespace."""
    async with connection.api() as api:
        custom = client.CustomObjectsApi(api)
        if not namespaces:
            await _created(
                custom.create_cluster_custom_object(
                    GROUP, VERSION, "clusterkopfpeerings", _peering("ClusterKopfPeering")
                )
            )
        for namespace in namespaces:
            await _created(
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "kopfpeerings", _peering("KopfPeering")
                )
            )


def _peering(kind: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": NAME}}


async def _created(creation: Awaitable[object]) -> None:
    """The object is there: created now, or before (409)."""
    try:
        await creation
    except ApiException as error:
        if error.status == 404:
            raise RuntimeError(
                "the peering resources are not installed (kubectl apply -f deploy/peering.yaml); "
                "or run a single bridge with --standalone"
            ) from None
        if error.status != 409:
            raise
