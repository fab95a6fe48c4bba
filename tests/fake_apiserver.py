"""A stand-in for the Kubernetes API server, for tests only.

No real API server can run on our machines, so tests talk to this one. It
speaks the real HTTP protocol, so the clients are the real ones (kubectl,
kopf, the official client): discovery, create/get/list/replace/patch/delete,
the status subresource, finalizers and deletionTimestamp, generation and
resourceVersion stamping, label selectors, watches that resume from a
resourceVersion (and answer 410 Gone when it is too old), and Table output
for `kubectl get`.

What it does not do: admission, validation against the CRD schema, RBAC,
garbage collection by owner references, or any kubelet: tests move pod phases
themselves, as a kubelet would.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonpatch
import yaml
from aiohttp import web

from crds import KINDS
from crds.common import MAX_ANNOTATIONS, annotations_size
from crds.generate import crd_for

PEERING_CRDS = Path(__file__).resolve().parents[1] / "deploy" / "peering.yaml"


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    columns: tuple[tuple[str, str, str, int], ...] = ()  # (name, type, JSONPath, priority)
    schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)  # for defaulting

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _core(plural: str, kind: str, namespaced: bool, status: bool = False) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, status_subresource=status)


def default_types() -> list[ResourceType]:
    """Core types the operator and kopf use, and our six kinds from their CRDs."""
    types = [
        _core("namespaces", "Namespace", False),
        _core("pods", "Pod", True, status=True),
        _core("events", "Event", True),
        _core("secrets", "Secret", True),
        ResourceType("events.k8s.io", "v1", "events", "Event", True),
        ResourceType(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
        ),
        ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ]
    # kopf's peering resources, as deploy/ installs them: the bridges' peering runs on these.
    for crd in yaml.safe_load_all(PEERING_CRDS.read_text()):
        spec = crd["spec"]
        types.append(
            ResourceType(
                spec["group"],
                spec["versions"][0]["name"],
                spec["names"]["plural"],
                spec["names"]["kind"],
                spec["scope"] == "Namespaced",
            )
        )
    for model in KINDS.values():
        crd = crd_for(model)["spec"]
        version = crd["versions"][0]
        columns = tuple(
            (column["name"], column["type"], column["jsonPath"], column.get("priority", 0))
            for column in version["additionalPrinterColumns"]
        )
        types.append(
            ResourceType(
                crd["group"],
                version["name"],
                crd["names"]["plural"],
                crd["names"]["kind"],
                crd["scope"] == "Namespaced",
                tuple(crd["names"]["shortNames"]),
                tuple(crd["names"]["categories"]),
                status_subresource=True,
                columns=columns,
                schema=version["schema"]["openAPIV3Schema"],
            )
        )
    return types


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge patches are applied the same way)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """`value` pruned of unknown fields and with the schema's defaults filled in,
    as the API server does for CRDs with structural schemas."""
    if isinstance(value, dict) and "properties" in schema:
        for key in [key for key in value if key not in schema["properties"]]:
            del value[key]
        for key, sub in schema["properties"].items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _defaulted(value[key], sub)
    elif isinstance(value, list) and "items" in schema:
        return [_defaulted(item, schema["items"]) for item in value]
    return value


def _json_path(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.strip(".").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: `a=b,c!=d,e`."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_match(obj: dict[str, Any], selector: str) -> bool:
    """Field selectors on `metadata.name` and `metadata.namespace`, as every kind supports."""
    metadata = obj.get("metadata", {})
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, value = term.replace("==", "=").split("=", 1)
        if metadata.get(key.removeprefix("metadata.")) != value:
            return False
    return True


@dataclass
class _Watch:
    type: ResourceType
    namespace: str | None
    selector: str
    fields: str = ""
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


class FakeApiServer:
    """The server. `url` after `start()`; `objects(...)`, `put_status(...)` for tests."""

    def __init__(self, types: list[ResourceType] | None = None, history: int = 10_000) -> None:
        self.types = types or default_types()
        self._store: dict[tuple[ResourceType, str | None, str], dict[str, Any]] = {}
        self._versions = itertools.count(1)
        self._history: list[tuple[int, ResourceType, dict[str, Any]]] = []
        self._history_limit = history
        self._oldest = 0  # events at or before this resourceVersion are forgotten
        self._watches: list[_Watch] = []
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.requests = 0
        self.watches_started: dict[str, int] = {}
        # A pod's log, as the kubelet would serve it: (namespace, pod) -> [(when, line)].
        self.pod_logs: dict[tuple[str, str], list[tuple[datetime, str]]] = {}

    # --- lifecycle ------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server: Any = site._server  # aiohttp exposes the bound port only here
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        self.disconnect_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}
            ],
            "current-context": "fake",
        }

    # --- test controls ----------------------------------------------------------

    def disconnect_watches(self) -> None:
        """End every open watch stream, as an API server restart or a network cut would."""
        for watch in self._watches:
            watch.queue.put_nowait(None)

    def expire_history(self) -> None:
        """Forget all watch history: a watch resuming from an old resourceVersion gets 410 Gone."""
        self._oldest = next(self._versions)
        self._history.clear()

    def watching_every_kind(self, before: dict[str, int] | None = None) -> bool:
        """Whether a watch of each of our kinds has started (since `before`, a copy of watches_started)."""
        before = before or {}
        return all(
            self.watches_started.get(kind.INFO.plural, 0) > before.get(kind.INFO.plural, 0)
            for kind in KINDS.values()
        )

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (kind, ns, _), obj in sorted(self._store.items(), key=lambda item: item[0][2])
            if kind.plural == plural and (namespace is None or ns == namespace)
        ]

    def create(self, plural: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object as a client would (a test's Secrets, Pods)."""
        return self._create(self._type_by_plural(plural), namespace, copy.deepcopy(body))

    def patch_status(self, plural: str, namespace: str | None, name: str, status: dict[str, Any]) -> None:
        """Change an object's status as a controller (a kubelet for pods) would."""
        type_ = self._type_by_plural(plural)
        obj = self._get(type_, namespace, name)
        updated = copy.deepcopy(obj)
        updated["status"] = _merge(obj.get("status", {}), status)
        self._write(type_, namespace, name, updated, "MODIFIED")

    # --- HTTP -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        try:
            return await self._route(request)
        except ApiError as error:
            return web.json_response(error.status(), status=error.code)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [part for part in request.path.split("/") if part]
        if request.path == "/version":
            return web.json_response({"major": "1", "minor": "37", "gitVersion": "v1.37.0-fake"})
        if parts == ["api"]:
            return web.json_response(
                {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        if parts == ["apis"]:
            return web.json_response(self._group_list())
        if parts[:1] == ["api"] and len(parts) == 2:
            return web.json_response(self._resource_list("", parts[1]))
        if parts[:1] == ["apis"] and len(parts) == 2:
            return web.json_response(self._group(parts[1]))
        if parts[:1] == ["apis"] and len(parts) == 3:
            return web.json_response(self._resource_list(parts[1], parts[2]))
        if parts[:1] == ["api"]:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"]:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({request.path})"
            )
        namespace = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        type_ = self._type(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        return await self._serve(request, type_, namespace if type_.namespaced else None, name, subresource)

    async def _serve(
        self,
        request: web.Request,
        type_: ResourceType,
        namespace: str | None,
        name: str | None,
        sub: str | None,
    ) -> web.StreamResponse:
        method = request.method
        if name is None:
            if method == "GET" and request.query.get("watch") in ("1", "true"):
                return await self._watch(request, type_, namespace)
            if method == "GET":
                query = request.query
                found = self._list(
                    type_, namespace, query.get("labelSelector", ""), query.get("fieldSelector", "")
                )
                return self._respond(request, type_, found)
            if method == "POST":
                created = self._create(type_, namespace, await request.json())
                return web.json_response(created, status=201)
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection")
        if method == "GET" and sub == "log" and type_.plural == "pods":
            return self._log(request, namespace or "", name)
        if method == "GET":
            return self._respond(request, type_, [self._get(type_, namespace, name)], single=True)
        if method == "PUT":
            return web.json_response(self._replace(type_, namespace, name, await request.json(), sub))
        if method == "PATCH":
            body = await request.json()
            kind = request.content_type
            return web.json_response(self._patch(type_, namespace, name, body, kind, sub))
        if method == "DELETE":
            return web.json_response(self._delete(type_, namespace, name))
        raise ApiError(405, "MethodNotAllowed", method)

    # --- discovery ----------------------------------------------------------------

    def _group_list(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for type_ in self.types:
            if type_.group and type_.version not in groups.setdefault(type_.group, []):
                groups[type_.group].append(type_.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group(group) for group in groups],
        }

    def _group(self, group: str) -> dict[str, Any]:
        versions = sorted({t.version for t in self.types if t.group == group})
        if not versions:
            raise ApiError(404, "NotFound", f"no group {group}")
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        types = [t for t in self.types if t.group == group and t.version == version]
        if not types:
            raise ApiError(404, "NotFound", f"no {group}/{version}")
        resources: list[dict[str, Any]] = []
        for t in types:
            resources.append(
                {
                    "name": t.plural,
                    "singularName": t.kind.lower(),
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    "shortNames": list(t.short_names),
                    "categories": list(t.categories),
                }
            )
            if t.status_subresource:
                resources.append(
                    {
                        "name": f"{t.plural}/status",
                        "singularName": "",
                        "namespaced": t.namespaced,
                        "kind": t.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": types[0].group_version,
            "resources": resources,
        }

    def _type(self, group: str, version: str, plural: str) -> ResourceType:
        for t in self.types:
            if (t.group, t.version, t.plural) == (group, version, plural):
                return t
        raise ApiError(
            404, "NotFound", f"the server could not find the requested resource {group}/{version}/{plural}"
        )

    def _type_by_plural(self, plural: str) -> ResourceType:
        return next(t for t in self.types if t.plural == plural and t.group != "events.k8s.io")

    # --- the store ------------------------------------------------------------------

    def _get(self, type_: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._store.get((type_, namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{type_.plural}.{type_.group or "core"} "{name}" not found')
        return obj

    def _list(
        self, type_: ResourceType, namespace: str | None, selector: str, fields: str = ""
    ) -> list[dict[str, Any]]:
        return [
            obj
            for (t, ns, _), obj in sorted(self._store.items(), key=lambda item: (str(item[0][1]), item[0][2]))
            if t == type_ and (namespace is None or ns == namespace)
            and _matches(obj.get("metadata", {}).get("labels", {}), selector) and _fields_match(obj, fields)
        ]  # fmt: skip

    def _log(self, request: web.Request, namespace: str, name: str) -> web.Response:
        """`GET .../pods/NAME/log` with `tailLines` and `timestamps`, as plain text."""
        self._get(self._type_by_plural("pods"), namespace, name)
        lines = self.pod_logs.get((namespace, name), [])
        tail = int(request.query.get("tailLines", "0") or 0)
        if tail:
            lines = lines[-tail:]
        stamped = request.query.get("timestamps") == "true"
        text = "".join(
            (f"{when.astimezone(UTC).isoformat().replace('+00:00', 'Z')} " if stamped else "") + line + "\n"
            for when, line in lines
        )
        return web.Response(text=text, content_type="text/plain")

    def _create(self, type_: ResourceType, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        metadata = body.setdefault("metadata", {})
        _check_annotations(metadata)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        name = metadata.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if (type_, namespace, name) in self._store:
            raise ApiError(409, "AlreadyExists", f'{type_.plural} "{name}" already exists')
        if namespace is not None:
            metadata["namespace"] = namespace
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        body.setdefault("apiVersion", type_.group_version)
        body.setdefault("kind", type_.kind)
        return self._write(type_, namespace, name, body, "ADDED")

    def _replace(
        self, type_: ResourceType, namespace: str | None, name: str, body: dict[str, Any], sub: str | None
    ) -> dict[str, Any]:
        current = self._get(type_, namespace, name)
        wanted_version = body.get("metadata", {}).get("resourceVersion")
        if wanted_version and wanted_version != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {type_.plural} "{name}": the object has been modified',
            )
        return self._update(type_, namespace, name, current, body, sub)

    def _patch(
        self,
        type_: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        content_type: str,
        sub: str | None,
    ) -> dict[str, Any]:
        current = self._get(type_, namespace, name)
        if content_type == "application/json-patch+json":
            try:
                wanted = jsonpatch.apply_patch(current, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                raise ApiError(422, "Invalid", str(error)) from None
        else:
            wanted = _merge(current, body)
        return self._update(type_, namespace, name, current, wanted, sub)

    def _update(
        self,
        type_: ResourceType,
        namespace: str | None,
        name: str,
        current: dict[str, Any],
        wanted: dict[str, Any],
        sub: str | None,
    ) -> dict[str, Any]:
        _check_annotations(wanted.get("metadata", {}))
        updated = copy.deepcopy(current)
        if sub == "status":
            updated["status"] = wanted.get("status")  # only the status moves
        else:
            for key, value in wanted.items():
                if key in ("status",) and type_.status_subresource:
                    continue  # the main resource cannot change the status
                if key != "metadata":
                    updated[key] = value
            for key in ("labels", "annotations", "finalizers", "ownerReferences"):
                if key in wanted.get("metadata", {}):
                    updated["metadata"][key] = wanted["metadata"][key]
                elif (
                    key in updated["metadata"]
                    and key in current.get("metadata", {})
                    and wanted.get("metadata") is not None
                ):
                    updated["metadata"].pop(key)
            if updated.get("spec") != current.get("spec"):
                updated["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if updated == current:
            return current
        metadata = updated["metadata"]
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            return self._remove(type_, namespace, name, updated)
        return self._write(type_, namespace, name, updated, "MODIFIED")

    def _delete(self, type_: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        current = self._get(type_, namespace, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = _now()
            return self._write(type_, namespace, name, updated, "MODIFIED")
        return self._remove(type_, namespace, name, current)

    def _remove(
        self, type_: ResourceType, namespace: str | None, name: str, obj: dict[str, Any]
    ) -> dict[str, Any]:
        del self._store[(type_, namespace, name)]
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(next(self._versions))
        self._publish(type_, "DELETED", final)
        return final

    def _write(
        self, type_: ResourceType, namespace: str | None, name: str, obj: dict[str, Any], event: str
    ) -> dict[str, Any]:
        if type_.schema is not None:
            for part in ("spec", "status"):
                if part in obj:
                    obj[part] = _defaulted(obj[part], type_.schema["properties"][part])
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self._store[(type_, namespace, name)] = obj
        self._publish(type_, event, obj)
        return obj

    def _publish(self, type_: ResourceType, event: str, obj: dict[str, Any]) -> None:
        snapshot = {"type": event, "object": copy.deepcopy(obj)}
        self._history.append((int(obj["metadata"]["resourceVersion"]), type_, snapshot))
        if len(self._history) > self._history_limit:
            self._oldest = self._history.pop(0)[0]
        for watch in self._watches:
            if self._wanted(watch, type_, obj):
                watch.queue.put_nowait(snapshot)

    @staticmethod
    def _wanted(watch: _Watch, type_: ResourceType, obj: dict[str, Any]) -> bool:
        metadata = obj.get("metadata", {})
        return (
            watch.type == type_
            and (watch.namespace is None or metadata.get("namespace") == watch.namespace)
            and _matches(metadata.get("labels", {}), watch.selector)
            and _fields_match(obj, watch.fields)
        )

    # --- responses --------------------------------------------------------------------

    def _respond(
        self, request: web.Request, type_: ResourceType, objects: list[dict[str, Any]], single: bool = False
    ) -> web.Response:
        if "as=Table" in request.headers.get("Accept", ""):
            return web.json_response(self._table(type_, objects))
        if single:
            return web.json_response(objects[0])
        return web.json_response(
            {
                "apiVersion": type_.group_version,
                "kind": f"{type_.kind}List",
                "metadata": {"resourceVersion": str(self._current_version())},
                "items": objects,
            }
        )

    def _current_version(self) -> int:
        return max(
            (int(o["metadata"]["resourceVersion"]) for o in self._store.values()), default=self._oldest
        )

    def _table(self, type_: ResourceType, objects: list[dict[str, Any]]) -> dict[str, Any]:
        columns = [("Name", "string", ".metadata.name", 0)]
        if type_.columns:
            columns += [c for c in type_.columns if c[0] != "Age"]
        elif type_.plural == "pods":
            columns += [("Status", "string", ".status.phase", 0)]
        columns.append(("Age", "date", ".metadata.creationTimestamp", 0))
        return {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "Table",
            "metadata": {"resourceVersion": str(self._current_version())},
            "columnDefinitions": [
                {
                    "name": name,
                    "type": kind,
                    "format": "name" if name == "Name" else "",
                    "description": "",
                    "priority": priority,
                }
                for name, kind, _, priority in columns
            ],
            "rows": [
                {
                    "cells": [self._cell(obj, path, kind) for _, kind, path, _ in columns],
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"],
                    },
                }
                for obj in objects
            ],
        }

    @staticmethod
    def _cell(obj: dict[str, Any], path: str, kind: str) -> Any:
        value = _json_path(obj, path)
        if kind == "date" and value:
            seconds = (
                datetime.now(UTC) - datetime.fromisoformat(value.replace("Z", "+00:00"))
            ).total_seconds()
            return f"{int(seconds)}s"
        return "<none>" if value is None else value

    async def _watch(
        self, request: web.Request, type_: ResourceType, namespace: str | None
    ) -> web.StreamResponse:
        since = request.query.get("resourceVersion", "")
        selector = request.query.get("labelSelector", "")
        timeout = float(request.query.get("timeoutSeconds", "0") or 0)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        watch = _Watch(type_, namespace, selector, request.query.get("fieldSelector", ""))
        self.watches_started[type_.plural] = self.watches_started.get(type_.plural, 0) + 1
        for event in self._replay(watch, since):
            await response.write(json.dumps(event).encode() + b"\n")
            if event["type"] == "ERROR":
                return response
        if request.query.get("sendInitialEvents") == "true":
            # A watch-list (client-go's streaming list) ends its initial events with this bookmark.
            bookmark = {
                "kind": type_.kind,
                "apiVersion": type_.group_version,
                "metadata": {
                    "resourceVersion": str(self._current_version()),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            }
            await response.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
        self._watches.append(watch)
        try:
            deadline = asyncio.get_running_loop().time() + timeout if timeout else None
            while True:
                remaining = (
                    None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
                )
                try:
                    change = await asyncio.wait_for(watch.queue.get(), remaining)
                except TimeoutError:
                    return response
                if change is None:
                    return response
                await response.write(json.dumps(change).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        finally:
            self._watches.remove(watch)

    def _replay(self, watch: _Watch, since: str) -> Iterator[dict[str, Any]]:
        if since in ("", "0"):
            for obj in self._list(watch.type, watch.namespace, watch.selector, watch.fields):
                yield {"type": "ADDED", "object": obj}
            return
        if int(since) < self._oldest:
            gone = ApiError(410, "Expired", f"too old resource version: {since} ({self._oldest})").status()
            yield {"type": "ERROR", "object": gone}
            return
        for version, type_, event in self._history:
            if version > int(since) and self._wanted(watch, type_, event["object"]):
                yield event


def _check_annotations(metadata: dict[str, Any]) -> None:
    """The API server's own rule: a resource's annotations, keys and values, total 256 KiB at most
    (kubectl apply's last-applied-configuration annotation holds the whole manifest)."""
    if annotations_size(metadata.get("annotations") or {}) > MAX_ANNOTATIONS:
        raise ApiError(
            422, "Invalid", f"metadata.annotations: Too long: must have at most {MAX_ANNOTATIONS} bytes"
        )
