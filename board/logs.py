"""A polecat agent's output as it grows: its log file (local), or its pod's log through the API server.

Shared by `gastown logs` / `attach` (a pod's) and the board's live log tail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from activities.kube import KubeConnection
from client.settings import Settings
from crds import Polecat

FILE_POLL = 0.5  # seconds between two looks at a growing log file


class CannotRead(Exception):
    """The polecat's output cannot be read from here; the message says why."""


async def pod_log(settings: Settings, polecat: Polecat, follow: bool) -> AsyncIterator[bytes]:
    """The agent container's log, as `kubectl logs [-f]` gives it."""
    pod = polecat.status.pod_name if polecat.status else None
    if not pod:
        raise CannotRead(f"polecat {polecat.name} has no pod yet")
    async with KubeConnection(settings.kubeconfig).api() as api:
        core = client.CoreV1Api(api)
        try:
            # The raw answer, read as it comes (a followed log never ends by itself).
            answer = await core.read_namespaced_pod_log_without_preload_content(
                pod, polecat.namespace, container="agent", follow=follow
            )
        except ApiException as error:
            raise CannotRead(
                f"polecat {polecat.name}: the log of pod {pod}: {error.status} {error.reason}"
            ) from None
        async with answer:
            if answer.status >= 400:
                raise CannotRead(
                    f"polecat {polecat.name}: the log of pod {pod}: {answer.status} {answer.reason}"
                )
            async for chunk in answer.content.iter_any():
                yield chunk


async def file_log(path: Path, start: int) -> AsyncIterator[bytes]:
    """What is appended to `path` from byte `start` on, as it is written (until cancelled); an empty
    chunk after each quiet look, so a reader can tell its own client is still there."""
    offset = start
    while True:
        try:
            with path.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        yield chunk
        if not chunk:
            await asyncio.sleep(FILE_POLL)
