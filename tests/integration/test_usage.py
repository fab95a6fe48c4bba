"""Usage for real: what a local agent reports, live while it works and final when it stops.

A custom agent reports its own requests to $GT_USAGE_FILE (the real CLIs' usage
comes from the gateway: tests/integration/test_agents.py and test_gateway.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from git import Repo
from temporalio.client import WorkflowHandle

from bridge.reconcile import Reconciler
from cli import render
from client.http_api import TemporalHttp
from client.reads import Reads, find
from client.settings import Settings
from client.usage import with_live_usage
from client.visibility import SdkReads
from contracts.tmux import WATCH_AGENT
from crds import Polecat, Witness
from crds.witness import WitnessAlert
from tests.helpers import (
    GitRig,
    parsed,
    polecat,
    polecat_manifest,
    reach,
    rig,
    rig_manifest,
    wait_until,
    witness_manifest,
)

pytestmark = pytest.mark.usefixtures("worker")


async def last_beat(handle: WorkflowHandle[Any, Any]) -> datetime:
    """When the polecat's agent watcher last beat."""
    description = await handle.describe()
    (watcher,) = [
        a for a in description.raw_description.pending_activities if a.activity_type.name == WATCH_AGENT
    ]
    return watcher.last_heartbeat_time.ToDatetime()


async def beat_after(handle: WorkflowHandle[Any, Any], then: datetime) -> bool:
    return await last_beat(handle) > then


@pytest.mark.parametrize("through", ["sdk", "http"])
async def test_usage_is_live_while_the_agent_works_and_final_when_it_stops(
    reconciler: Reconciler, settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path, through: str
) -> None:
    """The agent's reports show in `get -o wide` and `describe` within seconds, read through the
    SDK or Temporal's HTTP API (its heartbeat through the SDK) alike, while the polecat's history gains no event for them; when it
    stops, its status keeps the final figure."""
    assert settings.temporal_http_address is not None
    sdk = SdkReads(reconciler.client)

    async def through_sdk() -> Reads:
        return sdk

    http = TemporalHttp(settings.temporal_http_address, settings.temporal_namespace, through_sdk)
    reads: Reads = sdk if through == "sdk" else http
    gate = tmp_path / "gate"
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    usage_args = ["--usage", "claude-haiku-4-5=1000,200", "--usage", "claude-haiku-4-5=3000,0"]
    await reconciler.apply(
        polecat(polecat_manifest("nux", rig_name, *usage_args, "--commit", "a.md=a", "--wait-for", str(gate)))
    )
    await reach(reconciler, Polecat, "nux", "Working")
    handle = reconciler.client.get_workflow_handle("polecat/default/nux")

    async def live() -> Polecat | None:
        found = await find(reads, Polecat, "default", "nux")
        assert found is not None
        await with_live_usage(reads, [found])
        return found if found.status and found.status.usage else None

    working = await wait_until(live, "the agent's usage to show while it works", timeout=30)
    events = len([event async for event in handle.fetch_history_events()])
    assert working.status is not None and working.status.usage is not None
    assert (working.status.usage.input_tokens, working.status.usage.requests) == (4000, 2)
    assert "$0.0050" in render.table(Polecat, [working], wide=True, all_namespaces=False)
    described = render.describe(working, "ui")
    assert "claude-haiku-4-5  2" in described and "TOTAL" in described
    rig_lines = render.rig_usage([working]).splitlines()  # `gastown describe rig`: its live polecats
    assert rig_lines[0] == "Usage of its 1 live polecats:" and "$0.0050" in rig_lines[-1]
    stored = await reconciler.get(Polecat, "default", "nux")  # its memo: no update per heartbeat
    assert stored.status is not None and stored.status.usage is None
    first = await last_beat(handle)
    await wait_until(lambda: beat_after(handle, first), "the watcher to beat again", timeout=30)
    assert len([event async for event in handle.fetch_history_events()]) == events

    gate.touch()
    done = await reach(reconciler, Polecat, "nux", "Succeeded")
    assert done.status is not None and done.status.usage is not None
    assert (done.status.usage.output_tokens, done.status.usage.cost) == (200, "$0.0050")
    assert render.usage_report([done]).splitlines()[-1].split()[:3] == [rig_name, "1", "2"]


async def test_a_spent_budget_stops_the_agent_and_a_raised_one_continues_its_work(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A budget of 1,000 tokens: the agent reports 1,500 and works on; it is stopped mid-run, the
    polecat Failed (BudgetExceeded) with its commit kept, and the rig's Witness tells of it once
    without restarting it. A raised budget continues it, a new attempt in the same worktree."""
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    args = ["--runs", str(runs), "--commit", "a.md=a", "--usage", "m=1000,500", "--wait-for", str(gate)]
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    # Only its failure concerns this Witness: an agent held at the gate is quiet, not stuck.
    witness = witness_manifest(rig_name, stuckThreshold="10m", actions={"onFailed": "restart"})
    await reconciler.apply(parsed(Witness, witness))
    await reconciler.apply(polecat(polecat_manifest("nux", rig_name, *args, budget={"maxTokens": 1000})))
    failed = await reach(reconciler, Polecat, "nux", "Failed", timeout=60)
    assert failed.status is not None
    (condition,) = [c for c in failed.status.conditions if c.type == "Failed"]
    assert condition.reason == "BudgetExceeded"
    assert "used 1,500 tokens of spec.budget.maxTokens 1,000" in failed.status.message
    (first_run,) = runs.read_text().split()
    await wait_until(lambda: not psutil.pid_exists(int(first_run)), "the agent to be stopped", timeout=10)
    assert Repo(git_rig.checkout).commit("polecat/nux").message.strip() == "gt-test1: a.md"

    async def alerted_if(wanted: Callable[[WitnessAlert], bool]) -> WitnessAlert | None:
        """The Witness's latest alert, if `wanted`."""
        witness = await reconciler.get(Witness, "default", "witness")
        alerts = witness.status.alerts if witness.status else []
        return alerts[0] if alerts and wanted(alerts[0]) else None

    alert = await wait_until(lambda: alerted_if(lambda _: True), "the Witness to tell of the spent budget")
    assert (alert.type, alert.polecat) == ("Failed", "default/nux")
    assert "BudgetExceeded" in alert.message and "not restarted: raising its spec.budget" in alert.message

    await reconciler.apply(polecat(polecat_manifest("nux", rig_name, *args, budget={"maxTokens": 5000})))
    working = await reach(reconciler, Polecat, "nux", "Working", timeout=30)
    assert working.status is not None and working.status.restarts == 1
    (restarted,) = [c for c in working.status.conditions if c.type == "Restarted"]
    assert restarted.reason == "BudgetRaised"
    gate.touch()
    done = await reach(reconciler, Polecat, "nux", "Succeeded", timeout=30)
    assert done.status is not None and done.status.usage is not None
    assert done.status.usage.new_tokens == 3000  # both attempts, each counted once
    assert len(runs.read_text().split()) == 2
    recovered = await wait_until(
        lambda: alerted_if(lambda found: found.type == "Recovered"), "the Witness to see it recovered"
    )
    assert recovered.polecat == "default/nux"
