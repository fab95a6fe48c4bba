"""Kubernetes side effects of the workflows: a resource's status, and Events about it.

The worker reaches the API server with the in-cluster service account or a
kubeconfig (KUBECONFIG), loaded on first use, so a worker that never serves a
Kubernetes-backed resource needs no cluster at all.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException
from temporalio import activity

from contracts import status as contract
from contracts.status import EventNote, StatusTarget, StatusUpdate
from crds.common import rfc3339


class KubeConnection:
    """The API server's address and credentials, loaded once, for every Kubernetes activity."""

    def __init__(self, kubeconfig: str | None) -> None:
        self.kubeconfig = kubeconfig
        self._configuration: client.Configuration | None = None
        self._lock = asyncio.Lock()

    def api(self) -> _ApiClientContext:
        """`async with connection.api() as api:` a client, closed after use."""
        return _ApiClientContext(self)

    async def configuration(self) -> client.Configuration:
        async with self._lock:
            if self._configuration is None:
                configuration = client.Configuration()
                if self.kubeconfig:
                    await config.load_kube_config(
                        config_file=self.kubeconfig, client_configuration=configuration
                    )
                else:
                    config.load_incluster_config(client_configuration=configuration)
                self._configuration = configuration
            return self._configuration


class _ApiClientContext:
    def __init__(self, connection: KubeConnection) -> None:
        self.connection = connection
        self.client: client.ApiClient | None = None

    async def __aenter__(self) -> client.ApiClient:
        self.client = client.ApiClient(await self.connection.configuration())
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.close()


class KubeActivities(contract.KubeActivities):
    def __init__(self, connection: KubeConnection) -> None:
        self.connection = connection

    @activity.defn(name=contract.PUBLISH_STATUS)
    async def publish_status(self, update: StatusUpdate) -> None:
        async with self.connection.api() as api:
            if await self._patch_status(api, update):
                for note in update.events:
                    await self._post_event(api, update.target, note)

    async def _patch_status(self, api: client.ApiClient, update: StatusUpdate) -> bool:
        """True if the status was written (the object exists and is the one we serve)."""
        target = update.target
        objects = client.CustomObjectsApi(api)
        status = {**update.status}
        if update.observed_generation is not None:
            status["observedGeneration"] = update.observed_generation
        body = {"status": status}
        try:
            if target.namespace is None:
                found = await objects.get_cluster_custom_object(
                    target.group, target.version, target.plural, target.name
                )
            else:
                found = await objects.get_namespaced_custom_object(
                    target.group, target.version, target.namespace, target.plural, target.name
                )
            current = cast(dict[str, Any], found)  # custom objects come back as plain dicts
            if current["metadata"].get("uid") != target.uid:
                return False  # a newer object of the same name: not ours to write
            if target.namespace is None:
                await objects.patch_cluster_custom_object_status(
                    target.group, target.version, target.plural, target.name, body
                )
            else:
                await objects.patch_namespaced_custom_object_status(
                    target.group, target.version, target.namespace, target.plural, target.name, body
                )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def _post_event(self, api: client.ApiClient, target: StatusTarget, note: EventNote) -> None:
        now = rfc3339(datetime.now(UTC))
        namespace = target.namespace or "default"
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{target.name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{target.group}/{target.version}",
                "kind": target.kind,
                "name": target.name,
                "namespace": target.namespace,
                "uid": target.uid,
            },
            "reason": note.reason,
            "message": note.message[:1024],
            "type": note.type,
            "source": {"component": "gastown"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        # The client takes plain dicts for bodies, whatever its hints say.
        await client.CoreV1Api(api).create_namespaced_event(namespace, cast(Any, event))
