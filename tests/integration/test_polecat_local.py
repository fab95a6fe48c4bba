"""Polecats in local mode with every part real: Temporal dev server, worker, tmux, git."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import libtmux
import psutil
import pytest
from temporalio.client import Client

from bridge.reconcile import Reconciler, workflow_id_of
from client.settings import Settings
from crds import Polecat, Rig
from tests.helpers import (
    WORKER_COMMAND,
    GitRig,
    polecat,
    polecat_manifest,
    rig,
    rig_manifest,
    terminate_running,
    wait_until,
    worker_env,
)
from tests.helpers import reach as reach_phase

pytestmark = pytest.mark.usefixtures("worker")


async def apply_rig(reconciler: Reconciler, git_rig: GitRig, name: str) -> Rig:
    resource = rig(rig_manifest(name, git_rig))
    await reconciler.apply(resource)
    return resource


async def reach(reconciler: Reconciler, name: str, *phases: str, timeout: float = 30.0) -> Polecat:
    return await reach_phase(reconciler, Polecat, name, *phases, timeout=timeout)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_agent_commits_and_polecat_succeeds(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmux: libtmux.Server
) -> None:
    """A custom agent works its bead in a worktree; its commit lands on polecat/<name> on the remote."""
    await apply_rig(reconciler, git_rig, rig_name)
    assert (
        await reconciler.apply(
            polecat(polecat_manifest("nux", rig_name, "--commit", "notes.md=fixed gt-test1"))
        )
        == "created"
    )
    done = await reach(reconciler, "nux", "Succeeded", "Failed")
    assert done.status is not None
    assert done.status.phase == "Succeeded", done.status.message
    branches = git_rig.remote_branches()
    assert branches["polecat/nux"] == done.status.commit
    assert git_rig.files_on("polecat/nux")["notes.md"] == "fixed gt-test1\n"
    assert "main" in branches and branches["main"] != done.status.commit  # main untouched
    assert done.status.log_file and "committed notes.md" in Path(done.status.log_file).read_text()
    assert not tmux.has_session(done.status.tmux_session or "")  # the finished session is cleaned up


async def test_task_text_never_reaches_a_shell(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Shell metacharacters in a taskDescription are delivered as text and execute nothing."""
    marker = tmp_path / "pwned"
    hostile = f"\"; touch {marker}; echo $(id) `touch {marker}` && touch {marker} '; touch {marker}"
    await apply_rig(reconciler, git_rig, rig_name)
    manifest = polecat_manifest("slit", rig_name, taskDescription=hostile)
    await reconciler.apply(polecat(manifest))
    done = await reach(reconciler, "slit", "Succeeded", "Failed")
    assert done.status is not None and done.status.phase == "Succeeded", done.status
    assert not marker.exists()
    assert done.status.log_file is not None
    assert hostile in Path(done.status.log_file).read_text()  # the agent read it verbatim


async def test_failing_agent_reports_exit_code_and_output(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """An agent exiting non-zero leaves the polecat Failed with its code and last lines of output."""
    await apply_rig(reconciler, git_rig, rig_name)
    args = ("--say", "running the tests", "--say", "error: 3 tests failed", "--exit", "7")
    await reconciler.apply(polecat(polecat_manifest("rictus", rig_name, *args)))
    failed = await reach(reconciler, "rictus", "Failed", "Succeeded")
    assert failed.status is not None and failed.status.phase == "Failed"
    assert "agent exited with code 7" in failed.status.message
    assert "error: 3 tests failed" in failed.status.message
    assert failed.status.exit_code == 7
    assert "polecat/rictus" not in git_rig.remote_branches()  # a failed polecat publishes nothing


async def test_terminate_ends_the_whole_process_tree(
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    tmux: libtmux.Server,
    tmp_path: Path,
    settings: Settings,
) -> None:
    """Terminating a working polecat ends its agent and the agent's children; the worktree stays."""
    child_file, never = tmp_path / "child.pid", tmp_path / "never"
    await apply_rig(reconciler, git_rig, rig_name)
    await reconciler.apply(
        polecat(polecat_manifest("toast", rig_name, "--child-pid", str(child_file), "--wait-for", str(never)))
    )
    working = await reach(reconciler, "toast", "Working")
    assert working.status is not None and working.status.tmux_session
    session = working.status.tmux_session
    child = int(await wait_until(lambda: child_file.exists() and child_file.read_text(), "the agent's child"))
    agent = int(tmux.cmd("display", "-p", "-t", f"={session}:", "#{pane_pid}").stdout[0])
    assert psutil.Process(agent).cmdline()[1].endswith("scripted_agent.py")  # the pane's process is the agent
    await reconciler.signal(Polecat, "default", "toast", "terminate")
    done = await reach(reconciler, "toast", "Terminated")
    assert done.status is not None and done.status.current_state == "Terminated"
    assert gone(agent) and gone(child)
    assert not tmux.has_session(session)
    worktrees = list((settings.home / "worktrees" / rig_name / "default").glob("toast-*"))
    assert len(worktrees) == 1 and (worktrees[0] / "README.md").exists()  # the worktree stays


async def test_history_does_not_grow_while_the_agent_runs(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, client: Client, tmp_path: Path
) -> None:
    """While an agent works, its watcher only heartbeats: no history events are added."""
    gate = tmp_path / "gate"
    await apply_rig(reconciler, git_rig, rig_name)
    await reconciler.apply(polecat(polecat_manifest("dag", rig_name, "--wait-for", str(gate))))
    await reach(reconciler, "dag", "Working")
    handle = client.get_workflow_handle(workflow_id_of(Polecat, "default", "dag"))

    async def heartbeat_time() -> datetime | None:
        pending = (await handle.describe()).raw_description.pending_activities
        beats = [p.last_heartbeat_time.ToDatetime() for p in pending if p.HasField("last_heartbeat_time")]
        return beats[0] if beats else None

    first = await wait_until(heartbeat_time, "a first heartbeat")
    events_then = len((await handle.fetch_history()).events)

    async def later_heartbeat() -> bool:
        current = await heartbeat_time()
        return current is not None and current > first

    await wait_until(later_heartbeat, "a later heartbeat", timeout=30)
    assert len((await handle.fetch_history()).events) == events_then
    gate.touch()
    await reach(reconciler, "dag", "Succeeded")


async def test_rig_must_exist(reconciler: Reconciler) -> None:
    """A polecat naming a rig that does not exist is refused before anything starts."""
    problems = await reconciler.problems([polecat(polecat_manifest("ace", "atlantis"))])
    assert problems == ["Polecat default/ace: spec.rig: Rig 'atlantis' not found"]
    assert await reconciler.find(Polecat, "default", "ace") is None


async def test_broken_checkout_fails_clearly(reconciler: Reconciler, tmp_path: Path) -> None:
    """A rig whose localPath is not a git repository: the rig is NotReady and its polecat Failed, saying why."""
    not_a_repo = tmp_path / "empty"
    not_a_repo.mkdir()
    broken = rig(
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Rig",
            "metadata": {"name": "broken"},
            "spec": {"localPath": str(not_a_repo)},
        }
    )
    await reconciler.apply(broken)

    async def rig_phase() -> str | None:
        found = await reconciler.find(Rig, None, "broken")
        return found.status.phase if found and found.status else None

    assert await wait_until(rig_phase, "the rig's check") == "NotReady"
    await reconciler.apply(polecat(polecat_manifest("keeper", "broken")))
    failed = await reach(reconciler, "keeper", "Failed")
    assert failed.status is not None
    assert f"{not_a_repo} is not a git repository" in failed.status.message


async def test_worker_killed_mid_run_resumes_and_adopts(
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    settings: Settings,
    tmux: libtmux.Server,
    tmp_path: Path,
) -> None:
    """SIGKILL the worker while an agent works, let the agent finish, start a worker: the polecat
    Succeeds, the same session is adopted and the agent ran exactly once; what it spent is
    counted once."""
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    queue = settings.task_queue + "-sub"  # a queue only the subprocess workers poll
    sub = Reconciler(reconciler.client, queue)
    env = worker_env(settings.temporal_address, queue, settings.home, settings.tmux_socket)
    command = WORKER_COMMAND
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await apply_rig(sub, git_rig, rig_name)
        manifest = polecat_manifest(
            "capable", rig_name, "--runs", str(runs), "--wait-for", str(gate), "--commit", "a.txt=a",
            "--usage", "claude-haiku-4-5=1000,200",
        )  # fmt: skip
        await sub.apply(polecat(manifest))
        working = await reach(sub, "capable", "Working")
        first.send_signal(signal.SIGKILL)
        first.wait()
        gate.touch()  # the agent finishes while no worker runs
        second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            done = await reach(sub, "capable", "Succeeded", "Failed", timeout=60)
        finally:
            second.terminate()
            await asyncio.to_thread(second.wait)
    finally:
        if first.poll() is None:
            first.kill()
        await terminate_running(reconciler.client, queue)  # else a later test's `capable` joins this one
    assert done.status is not None
    assert done.status.phase == "Succeeded", done.status.message
    assert working.status is not None and done.status.tmux_session == working.status.tmux_session
    assert len(runs.read_text().splitlines()) == 1  # never a second agent
    assert git_rig.files_on("polecat/capable")["a.txt"] == "a\n"
    usage = done.status.usage
    assert usage is not None and (usage.requests, usage.input_tokens, usage.cost) == (1, 1000, "$0.0020")


async def test_recreated_polecat_continues_its_branch(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """Deleting a polecat and creating one of the same name: a fresh worktree, the branch's commits kept."""
    await apply_rig(reconciler, git_rig, rig_name)
    await reconciler.apply(polecat(polecat_manifest("angharad", rig_name, "--commit", "first.txt=1")))
    await reach(reconciler, "angharad", "Succeeded")
    await reconciler.delete(Polecat, "default", "angharad")
    await reconciler.apply(polecat(polecat_manifest("angharad", rig_name, "--commit", "second.txt=2")))
    done = await reach(reconciler, "angharad", "Succeeded", "Failed")
    assert done.status is not None
    assert done.status.phase == "Succeeded", done.status.message
    files = git_rig.files_on("polecat/angharad")
    assert (files["first.txt"], files["second.txt"]) == ("1\n", "2\n")


async def test_uncommitted_work_of_an_earlier_polecat_is_never_discarded(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, settings: Settings
) -> None:
    """If an earlier polecat's worktree holds uncommitted work, its successor fails and says where it is."""
    await apply_rig(reconciler, git_rig, rig_name)
    await reconciler.apply(polecat(polecat_manifest("cheedo", rig_name)))
    await reach(reconciler, "cheedo", "Succeeded")
    await reconciler.delete(Polecat, "default", "cheedo")
    (earlier,) = (settings.home / "worktrees" / rig_name / "default").glob("cheedo-*")
    (earlier / "draft.txt").write_text("not committed yet")
    await reconciler.apply(polecat(polecat_manifest("cheedo", rig_name)))
    failed = await reach(reconciler, "cheedo", "Failed", "Succeeded")
    assert failed.status is not None
    assert failed.status.phase == "Failed"
    assert f"uncommitted work in {earlier}" in failed.status.message
    assert (earlier / "draft.txt").read_text() == "not committed yet"


async def test_agent_killed_by_a_signal_fails_with_128_plus_signal(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """An agent killed from outside (as by the OOM killer) leaves the polecat Failed with code 137."""
    runs = tmp_path / "runs"
    await apply_rig(reconciler, git_rig, rig_name)
    await reconciler.apply(
        polecat(
            polecat_manifest("valkyrie", rig_name, "--runs", str(runs), "--wait-for", str(tmp_path / "never"))
        )
    )
    await reach(reconciler, "valkyrie", "Working")
    agent = int(await wait_until(lambda: runs.exists() and runs.read_text().split()[0], "the agent's pid"))
    os.kill(agent, signal.SIGKILL)
    failed = await reach(reconciler, "valkyrie", "Failed", "Succeeded")
    assert failed.status is not None
    assert (failed.status.phase, failed.status.exit_code) == ("Failed", 137)
    assert "agent exited with code 137" in failed.status.message
