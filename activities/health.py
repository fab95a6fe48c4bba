"""What a Witness sees of its rig's polecats: their phases, and how long each has been quiet.

One visibility query lists the rig's polecats with their memos (their
status), however many there are. Progress is what an agent visibly does,
measured where the agent runs, without a Temporal call per polecat:

- local mode: the newest of the agent's output (its log file, which tmux
  appends to), its worktree's HEAD reflog (a commit) and index (a `git add`);
- kubernetes mode: the time of the agent container's last log line (one log
  read per working pod).

The activity only reports; the Witness's workflow decides what is stuck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from temporalio import activity
from temporalio.client import Client

from activities.kube import KubeConnection
from client.queries import rig_polecats
from client.visibility import describe_running
from contracts import attributes
from contracts import health as contract
from contracts.git import worktree_path
from contracts.health import HealthReport, HealthRequest, PolecatHealth
from crds.polecat import PolecatStatus

MESSAGE_CHARS = 300
# Concurrent pod log reads of one look.
POD_READS = 16


class HealthActivities(contract.HealthActivities):
    def __init__(self, client: Client, home: Path, connection: KubeConnection) -> None:
        self.client = client
        self.home = home
        self.connection = connection

    @activity.defn(name=contract.OBSERVE)
    async def observe(self, request: HealthRequest) -> HealthReport:
        query = rig_polecats(request.rig)
        memos = [await execution.memo() async for execution in self.client.list_workflows(query)]
        if request.host is not None:
            memos = [memo for memo in memos if _status(memo).host == request.host]
        polecats = await self._look(memos, request)
        found = report(polecats, request)
        if request.by_host:  # these are read by a look on their host
            found.hosts = sorted({p.host for p in polecats if p.host and p.phase == "Working"})
        return found

    @activity.defn(name=contract.RECHECK)
    async def recheck(self, keys: list[str]) -> list[PolecatHealth]:
        memos = []
        for key in keys:
            namespace, name = key.split("/", 1)
            description = await describe_running(
                self.client, attributes.workflow_id("Polecat", namespace, name)
            )
            if description is not None:
                memos.append(await description.memo())
        return await self._look(memos, None)

    async def _look(
        self, memos: list[Mapping[str, Any]], request: HealthRequest | None
    ) -> list[PolecatHealth]:
        """Each polecat from its memo; a Working one with how long it has been quiet, where this
        worker can see it. `request` None: a recheck, which reads no host's files."""
        polecats: list[PolecatHealth] = []
        pods: list[tuple[PolecatHealth, str]] = []
        for memo in memos:
            status = _status(memo)
            polecat = _health(memo.get(attributes.MEMO_METADATA, {}), status)
            polecats.append(polecat)
            if polecat.phase != "Working":
                continue
            if status.pod_name:
                pods.append((polecat, status.pod_name))
            elif request is not None and request.quiet_since is not None:  # its host does not answer
                polecat.quiet_for = max(0.0, (datetime.now(UTC) - request.quiet_since).total_seconds())
            elif status.host is not None and (request is None or request.by_host):
                continue  # read on its host, by a look of its own
            else:
                rig = memo.get(attributes.MEMO_SPEC, {}).get("rig", "")
                worktree = worktree_path(self.home, rig, polecat.namespace, polecat.name, polecat.uid)
                polecat.quiet_for = quiet_for(_progress_files(status.log_file, worktree))
        if pods:
            await self._measure_pods(pods)
        return polecats

    async def _measure_pods(self, pods: list[tuple[PolecatHealth, str]]) -> None:
        limit = asyncio.Semaphore(POD_READS)
        async with self.connection.api() as api:
            core = client.CoreV1Api(api)

            async def measure(polecat: PolecatHealth, pod: str) -> None:
                async with limit:
                    try:
                        log = await core.read_namespaced_pod_log(
                            pod, polecat.namespace, container="agent", tail_lines=1, timestamps=True
                        )
                    except ApiException:
                        return  # no pod (yet, or any more): not visible
                polecat.quiet_for = quiet_since_log(log, polecat.working_since)

            await asyncio.gather(*(measure(polecat, pod) for polecat, pod in pods))


def report(polecats: list[PolecatHealth], request: HealthRequest) -> HealthReport:
    """The counts of a look, and the polecats worth the Witness's attention in full."""
    watching = set(request.watching)
    quiet_after = request.quiet_after.total_seconds()
    found = HealthReport()
    for polecat in polecats:
        found.monitored += polecat.phase != "Terminated"
        found.failed += polecat.phase == "Failed"
        quiet = polecat.phase == "Working" and (polecat.quiet_for or 0.0) >= quiet_after
        if polecat.phase == "Failed" or quiet or polecat.key in watching:
            found.notable.append(polecat)
    return found


def _status(memo: Mapping[str, Any]) -> PolecatStatus:
    return PolecatStatus.model_validate(memo.get(attributes.MEMO_STATUS, {}))


def _health(metadata: Mapping[str, Any], status: PolecatStatus) -> PolecatHealth:
    reason = next((c.reason for c in status.conditions if c.type == "Ready"), "")
    return PolecatHealth(
        namespace=metadata.get("namespace", "default"),
        name=metadata.get("name", ""),
        uid=metadata.get("uid"),
        phase=status.phase,
        bead_id=status.bead_id,
        restarts=status.restarts,
        host=status.host,
        working_since=status.last_restart_time or status.start_time,
        completion_time=status.completion_time,
        reason=reason,
        message=status.message[:MESSAGE_CHARS],
    )


def _progress_files(log_file: str | None, worktree: Path) -> list[Path]:
    """The files an agent's visible progress touches: its output, and its worktree's HEAD log and index."""
    files = [Path(log_file)] if log_file else []
    try:
        git_dir = Path((worktree / ".git").read_text().removeprefix("gitdir:").strip())
    except OSError:
        return files
    return [*files, git_dir / "logs" / "HEAD", git_dir / "index"]


def quiet_for(files: list[Path]) -> float | None:
    """Seconds since the newest of `files` changed; None if none exists here."""
    times = []
    for path in files:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(0.0, time.time() - max(times)) if times else None


def quiet_since_log(log: str, working_since: datetime | None) -> float | None:
    """Seconds since the last line of a pod's log (`timestamps=true`); since the attempt began if none."""
    stamp = log.strip().split(" ", 1)[0] if log.strip() else ""
    last: datetime | None
    try:
        last = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        last = working_since
    if last is None:
        return None
    return max(0.0, (datetime.now(UTC) - last).total_seconds())
