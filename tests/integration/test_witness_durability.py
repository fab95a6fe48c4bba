"""A Witness across worker restarts: what it has told people, it does not tell again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import libtmux
from temporalio.client import Client

from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import Witness
from tests.helpers import (
    GitRig,
    parsed,
    polecat,
    polecat_manifest,
    rig,
    rig_manifest,
    terminate_running,
    wait_until,
    witness_manifest,
)
from tests.integration.conftest import Webhook
from worker.main import build_worker


async def test_one_alert_across_a_worker_restart(
    client: Client,
    settings: Settings,
    tmux: libtmux.Server,
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    tmp_path: Path,
    webhook: Webhook,
) -> None:
    """A polecat stays stuck while the worker stops and another starts: checks go on, and Slack has
    heard of it exactly once."""
    manifest = witness_manifest(
        rig_name, stuckThreshold="2s", notifications={"slack": {"webhookURL": webhook.url}}
    )
    agent = ["--say", "thinking", "--runs", str(tmp_path / "runs"), "--stall-runs", "99"]
    try:
        async with build_worker(client, settings):
            await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
            await reconciler.apply(parsed(Witness, manifest))
            await reconciler.apply(polecat(polecat_manifest("nux", rig_name, *agent, beadID="gt-1")))
            await wait_until(lambda: webhook.received, "the Stuck alert", 60)
        restarted = datetime.now(UTC)
        async with build_worker(client, settings):

            async def checked_since_restart() -> bool:
                found = await reconciler.find(Witness, "default", "witness")
                last = found.status.last_check if found and found.status else None
                return last is not None and last >= restarted + timedelta(seconds=3)

            await wait_until(checked_since_restart, "a check by the new worker, 3 s after the restart", 60)
            found = await reconciler.get(Witness, "default", "witness")
        assert found.status is not None
        assert [(a.polecat, a.type) for a in found.status.alerts] == [("default/nux", "Stuck")]
        assert len(webhook.received) == 1 and webhook.attempts == 1
    finally:
        await terminate_running(client, settings.task_queue)
