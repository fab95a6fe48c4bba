"""Reads through Temporal's HTTP API (JSON over HTTP/1.1), for commands that must start fast.

A new process that imports the SDK spends about 250 ms on it (its protobuf modules and native
bridge) before it sends anything, and a read command like `gastown get` has nothing else to
do. The server's HTTP API answers the same reads, a visibility list or a workflow's description,
as one GET of JSON whose memo fields and heartbeat details it has already decoded (our payloads
are json/plain). This module needs only the standard library.

Everything comes from visibility, as `gastown get`'s lists always did: a workflow's own record
(a description) cannot be asked for by this API, whose routes take no `/` in a workflow id and
ours all have one. So one resource is a one-row list (a moment behind its record at most), and
what only a description holds, a running watcher's heartbeat (live usage), comes through
`described`, the SDK's reads, connected only when a command needs it.

The embedded runtime's dev server serves the API on GASTOWN_HTTP_PORT; a Temporal service
elsewhere is read this way when TEMPORAL_HTTP_ADDRESS names its HTTP port, through the SDK otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from client.queries import running_id

if TYPE_CHECKING:
    from client.reads import Reads

JSON_PLAIN = "json/plain"
PAGE_SIZE = 1000


class HttpUnavailable(ConnectionError):
    """Temporal's HTTP API did not answer."""


class TemporalHttp:
    """The reads of `client.reads.Reads`, through Temporal's HTTP API at `address` (HOST:PORT)."""

    def __init__(
        self,
        address: str,
        namespace: str,
        described: Callable[[], Awaitable[Reads]],
        timeout: float = 10.0,
    ) -> None:
        self.root = f"http://{address}/api/v1"
        self.namespace = urllib.parse.quote(namespace, safe="")
        self.timeout = timeout
        self._described = described
        self._through_sdk: Reads | None = None

    def answers(self) -> bool:
        """Whether a Temporal HTTP API answers there (a quick GET of the server's system info)."""
        try:
            return "serverVersion" in self._get("/system-info", timeout=min(self.timeout, 2.0))
        except (HttpUnavailable, LookupError):
            return False

    async def memos(self, query: str) -> list[Mapping[str, Any]]:
        """The memo of every workflow `query` lists, over as many pages as it takes."""
        found: list[Mapping[str, Any]] = []
        token = ""
        while True:
            params = {"query": query, "pageSize": str(PAGE_SIZE), "noPayloadShorthand": "true"}
            if token:
                params["nextPageToken"] = token
            page = await self._fetch(f"/namespaces/{self.namespace}/workflows", params)
            found += [_memo(execution) for execution in page.get("executions", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return found

    async def running_memo(self, workflow_id: str) -> Mapping[str, Any] | None:
        """The memo of the running workflow `workflow_id`; None if none runs."""
        found = await self.memos(running_id(workflow_id))
        return found[0] if found else None

    async def heartbeat(self, workflow_id: str, activities: Collection[str]) -> Any | None:
        """From the workflow's description, read through the SDK (connected on first use)."""
        if self._through_sdk is None:
            self._through_sdk = await self._described()
        return await self._through_sdk.heartbeat(workflow_id, activities)

    async def _fetch(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        return await asyncio.to_thread(self._get, path, params)

    def _get(
        self, path: str, params: dict[str, str] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """The JSON answer of a GET; LookupError on 404, HttpUnavailable if nothing answers."""
        url = f"{self.root}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=timeout or self.timeout) as answer:
                return dict(json.load(answer))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise LookupError(path) from None
            raise HttpUnavailable(f"Temporal's HTTP API at {self.root}: HTTP {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            raise HttpUnavailable(f"Temporal's HTTP API at {self.root} did not answer: {error}") from None


def _memo(execution: Mapping[str, Any]) -> Mapping[str, Any]:
    """A listed execution's memo, each field a payload decoded."""
    return {key: _decoded(payload) for key, payload in execution.get("memo", {}).get("fields", {}).items()}


def _decoded(payload: Mapping[str, Any]) -> Any:
    """A json/plain payload's value (the only encoding our data converter writes to a memo)."""
    encoding = base64.b64decode(payload.get("metadata", {}).get("encoding", "")).decode()
    if encoding != JSON_PLAIN:
        raise ValueError(f"a memo payload encoded {encoding!r}, not {JSON_PLAIN}")
    return json.loads(base64.b64decode(payload.get("data", "")))
