"""The `gastown` command as a user runs it, against the real dev server and a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import Polecat, Rig, parse_resource
from tests.helpers import (
    GASTOWN,
    GitRig,
    beadstore_manifest,
    convoy_manifest,
    free_port,
    polecat_manifest,
    refinery_manifest,
    rig_manifest,
    wait_until,
    worker_env,
    write_beads,
)

pytestmark = pytest.mark.usefixtures("worker")


@dataclass
class Result:
    code: int
    out: str
    err: str


def env_of(settings: Settings) -> dict[str, str]:
    """A user's environment: the read commands read through Temporal's HTTP API."""
    s = settings
    return worker_env(s.temporal_address, s.task_queue, s.home, s.tmux_socket, s.temporal_http_address)


async def gastown(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    """Run the installed `gastown` binary (async, so the in-process worker keeps working)."""
    process = await asyncio.create_subprocess_exec(
        GASTOWN,
        *args,
        env=env_of(settings),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode() if stdin else None)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def write(path: Path, *documents: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


async def phase(settings: Settings, name: str) -> str:
    result = await gastown(settings, "get", "polecat", name, "-o", "json")
    return str(json.loads(result.out).get("status", {}).get("phase")) if result.code == 0 else ""


async def has_phase(settings: Settings, name: str, wanted: str) -> bool:
    return await phase(settings, name) == wanted


async def test_apply_get_describe_logs_delete(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """The everyday loop: apply, watch it in `get`, read `describe` and `logs`, then delete."""
    manifest = write(
        tmp_path / "town.yaml",
        rig_manifest(rig_name, git_rig),
        polecat_manifest("furiosa", rig_name, "--say", "hello from the agent", "--commit", "a.txt=1"),
    )
    applied = await gastown(settings, "apply", "-f", manifest)
    assert applied.code == 0, applied.err
    assert applied.out.splitlines() == [
        f"rig.gastown.gastown.io/{rig_name} created",
        "polecat.gastown.gastown.io/furiosa created",
    ]
    await wait_until(lambda: has_phase(settings, "furiosa", "Succeeded"), "furiosa to succeed")

    again = await gastown(settings, "apply", "-f", manifest)
    assert again.out.splitlines()[-1] == "polecat.gastown.gastown.io/furiosa unchanged"

    table = await gastown(settings, "get", "polecats")
    header, row = table.out.splitlines()
    assert header.split() == ["NAME", "RIG", "DESIRED", "PHASE", "BEAD", "AGENT", "MODE", "AGE"]
    assert row.split()[:7] == ["furiosa", rig_name, "Working", "Succeeded", "gt-test1", "custom", "local"]

    wide = await gastown(settings, "get", "pc", "-o", "wide")
    assert "MESSAGE" in wide.out.splitlines()[0] and "done: branch polecat/furiosa" in wide.out
    header, row = wide.out.splitlines()
    assert row.split()[header.split().index("HOST")] == settings.host  # where its worktree and session are

    listed = yaml.safe_load((await gastown(settings, "get", "polecats", "-o", "yaml")).out)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["furiosa"]

    described = await gastown(settings, "describe", "polecat", "furiosa")
    assert "Phase:        Succeeded" in described.out
    assert "Conditions:" in described.out and "AgentSucceeded" in described.out
    assert (
        "Temporal UI:  http://127.0.0.1:8233/namespaces/default/workflows/polecat%2Fdefault%2Ffuriosa"
        in described.out
    )
    assert f"Attach:       tmux -L {settings.tmux_socket} attach -t gt-default-furiosa-" in described.out

    logs = await gastown(settings, "logs", "polecat", "furiosa")
    assert "hello from the agent" in logs.out

    deleted = await gastown(settings, "delete", "polecat", "furiosa")
    assert deleted.out.strip() == 'polecat.gastown.gastown.io "furiosa" deleted'
    missing = await gastown(settings, "get", "polecat", "furiosa")
    assert (missing.code, missing.err.strip()) == (1, 'Error: polecats "furiosa" not found')


async def test_a_batch_applies_its_rig_store_and_polecat_in_order(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """One file with a new Rig, its BeadStore and a polecat: the polecat finds the Rig applied just
    before it and reads its bead from the store applied with it (what checking the batch read is
    read afresh once the batch changes it)."""
    source = tmp_path / "issues.jsonl"
    write_beads(source, [{"id": "gt-test1", "title": "Mend the fence"}])
    manifest = write(
        tmp_path / "batch.yaml",
        polecat_manifest("capable", rig_name, "--commit", "a.txt=1"),
        beadstore_manifest("beads", rig_name, str(source)),
        rig_manifest(rig_name, git_rig),
    )
    applied = await gastown(settings, "apply", "-f", manifest)
    assert applied.code == 0, applied.err
    assert applied.out.splitlines() == [
        f"rig.gastown.gastown.io/{rig_name} created",
        "beadstore.gastown.gastown.io/beads created",
        "polecat.gastown.gastown.io/capable created",
    ]
    await wait_until(lambda: has_phase(settings, "capable", "Succeeded"), "capable to succeed")
    shown = json.loads((await gastown(settings, "get", "polecat", "capable", "-o", "json")).out)
    assert shown["status"]["beadTitle"] == "Mend the fence"


async def test_reads_through_the_http_api_show_what_the_sdk_shows(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """`get`, `describe` and `usage` read through Temporal's HTTP API where it answers, and show
    exactly what they show read through the SDK (TEMPORAL_HTTP_ADDRESS unset)."""
    gate = tmp_path / "gate"
    manifest = write(
        tmp_path / "town.yaml",
        rig_manifest(rig_name, git_rig),
        polecat_manifest("dag", rig_name, "--usage", "claude-haiku-4-5=1000,200", "--wait-for", str(gate)),
        polecat_manifest("ace", rig_name, "--commit", "a.txt=1"),
    )
    assert (await gastown(settings, "apply", "-f", manifest)).code == 0
    await wait_until(lambda: has_phase(settings, "ace", "Succeeded"), "ace to succeed")
    await wait_until(lambda: has_phase(settings, "dag", "Working"), "dag to work")
    through_sdk = settings.model_copy(update={"temporal_http_address": None})

    async def spent() -> bool:  # dag's watcher has beaten with its usage: both read the same
        shown = await gastown(through_sdk, "get", "polecat", "dag", "-o", "json")
        return shown.code == 0 and json.loads(shown.out)["status"].get("usage") is not None

    await wait_until(spent, "dag's usage to show")
    for command in (
        ["get", "polecats", "-o", "json"],
        ["get", "polecat", "dag", "-o", "yaml"],
        ["get", "rigs", "-o", "json"],
        ["describe", "polecat", "ace"],
        ["usage"],
    ):
        http, sdk = await gastown(settings, *command), await gastown(through_sdk, *command)
        assert (http.code, http.err) == (0, ""), command
        assert http.out == sdk.out, command
    missing = await gastown(settings, "get", "polecat", "nobody")
    assert (missing.code, missing.err.strip()) == (1, 'Error: polecats "nobody" not found')
    gate.touch()


async def test_invalid_batch_applies_nothing(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path, reconciler: Reconciler
) -> None:
    """One invalid document refuses the whole batch: exit 1, the field and rule named, nothing started."""
    bad = polecat_manifest("immortan", rig_name, agentConfig={"temperature": 2})
    bad["spec"]["desiredState"] = "Sprinting"
    result = await gastown(
        settings, "apply", "-f", write(tmp_path / "bad.yaml", rig_manifest(rig_name, git_rig), bad)
    )
    assert result.code == 1
    assert result.out == ""
    lines = result.err.splitlines()
    assert (
        "Polecat default/immortan: spec.desiredState: Input should be 'Idle', 'Working' or 'Terminated' (got 'Sprinting')"
        in lines
    )
    assert (
        "Polecat default/immortan: spec.agentConfig.temperature: Input should be less than or equal to 1 (got 2)"
        in lines
    )
    assert "Traceback" not in result.err
    assert await reconciler.find(Rig, None, rig_name) is None  # the valid Rig was not applied either


async def test_what_the_fuzzer_found_is_refused_one_line_each(settings: Settings, tmp_path: Path) -> None:
    """Manifests like those hypothesis found breaking the parser (tests/unit/test_bad_input.py): a kind
    that is a list, a field name holding a newline, a 3 MB field. One line each, exit 1, no traceback."""
    unhashable = {"apiVersion": "gastown.gastown.io/v1alpha1", "kind": [], "metadata": {"name": "x"}}
    newline, huge = polecat_manifest("slit", "r1"), polecat_manifest("ace", "r1")
    newline["spec"]["bad\nname"] = 1
    huge["spec"]["beadID"] = "x" * 3_000_000
    result = await gastown(settings, "apply", "-f", write(tmp_path / "bent.yaml", unhashable, newline, huge))
    assert result.code == 1 and "Traceback" not in result.err
    lines = result.err.splitlines()
    assert lines[:2] == [
        "(no kind) default/x: kind: must be one of Polecat, Convoy, Witness, Refinery, Rig, BeadStore",
        "Polecat default/slit: spec.bad\\nname: unknown field",
    ]
    assert lines[2].startswith("Polecat default/ace: spec.beadID: String should have at most 128 characters")
    assert len(lines) == 3 and len(lines[2]) < 200


async def test_missing_rig_is_refused(settings: Settings, tmp_path: Path, reconciler: Reconciler) -> None:
    """A Polecat whose rig does not exist is refused with exit 1 and starts nothing."""
    result = await gastown(
        settings, "apply", "-f", write(tmp_path / "p.yaml", polecat_manifest("bullet", "atlantis"))
    )
    assert (result.code, result.err.strip()) == (
        1,
        "Polecat default/bullet: spec.rig: Rig 'atlantis' not found",
    )
    assert await reconciler.find(Polecat, "default", "bullet") is None


async def test_apply_from_stdin_and_terminate(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """Manifests can come from stdin; `gastown terminate` ends a working polecat and waits for it. The
    spec stays as applied and the status says how it ended; the same file again changes nothing, and
    a changed spec asking for Working is refused (a Terminated polecat is not restarted)."""
    documents = yaml.safe_dump_all(
        [
            rig_manifest(rig_name, git_rig),
            polecat_manifest("warboy", rig_name, "--wait-for", str(tmp_path / "never")),
        ]
    )
    applied = await gastown(settings, "apply", "-f", "-", stdin=documents)
    assert applied.code == 0, applied.err
    await wait_until(lambda: has_phase(settings, "warboy", "Working"), "warboy to work")
    terminated = await gastown(settings, "terminate", "polecat", "warboy")
    assert (terminated.code, terminated.out.strip()) == (0, "polecat.gastown.gastown.io/warboy terminated")
    shown = json.loads((await gastown(settings, "get", "polecat", "warboy", "-o", "json")).out)
    assert (shown["spec"]["desiredState"], shown["status"]["phase"]) == ("Working", "Terminated")
    (how,) = [c for c in shown["status"]["conditions"] if c["type"] == "Terminated"]
    assert (how["status"], how["reason"]) == ("True", "TerminateSignal")
    again = await gastown(settings, "apply", "-f", "-", stdin=documents)
    assert again.code == 0, again.err
    assert "polecat.gastown.gastown.io/warboy unchanged" in again.out
    changed = yaml.safe_dump_all(
        [
            rig_manifest(rig_name, git_rig),
            polecat_manifest("warboy", rig_name, "--wait-for", str(tmp_path / "other")),
        ]
    )
    refused = await gastown(settings, "apply", "-f", "-", stdin=changed)
    assert refused.code == 1
    assert "spec.desiredState: the polecat is Terminated; delete it to start again" in refused.err


async def test_logs_follow_until_done(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """`logs -f` streams the agent's output and returns when the agent stops."""
    gate = tmp_path / "gate"
    manifest = polecat_manifest("immortan", rig_name, "--say", "first line", "--wait-for", str(gate))
    await gastown(
        settings, "apply", "-f", write(tmp_path / "m.yaml", rig_manifest(rig_name, git_rig), manifest)
    )
    await wait_until(lambda: has_phase(settings, "immortan", "Working"), "immortan to work")
    follower = await asyncio.create_subprocess_exec(
        GASTOWN, "logs", "polecat", "immortan", "-f", env=env_of(settings), stdout=asyncio.subprocess.PIPE
    )
    assert follower.stdout is not None
    seen = b""
    while b"first line" not in seen:  # streamed while the agent still runs
        seen += await asyncio.wait_for(follower.stdout.readline(), 30)
    assert not gate.exists()
    gate.touch()
    rest = await asyncio.wait_for(follower.stdout.read(), 30)
    assert await follower.wait() == 0
    assert b"exiting with 0" in rest


async def test_unreachable_runtime_exits_2(settings: Settings) -> None:
    """With no Temporal to talk to, commands exit 2 with one line that says what to do."""
    nowhere = {
        "temporal_address": f"127.0.0.1:{free_port()}",
        "temporal_http_address": f"127.0.0.1:{free_port()}",
    }
    away = settings.model_copy(update=nowhere)
    result = await gastown(away, "get", "polecats")
    assert result.code == 2
    assert "cannot reach Temporal" in result.err and "gastown up" in result.err
    assert "Traceback" not in result.err
    assert (await gastown(away, "status")).code == 2


async def test_status_says_whether_a_worker_polls(settings: Settings) -> None:
    """`gastown status` (the health check) is 0 with a worker polling, 2 on a queue nobody polls."""
    up = await gastown(settings, "status")
    assert (up.code, up.out.strip()) == (
        0,
        f"ok: Temporal {settings.temporal_address}, a worker polls {settings.task_queue}",
    )
    idle = await gastown(settings.model_copy(update={"task_queue": "nobody-polls-this"}), "status")
    assert idle.code == 2 and "no worker polls task queue nobody-polls-this" in idle.err


async def test_status_names_each_host_and_its_workers(
    settings: Settings, reconciler: Reconciler, git_rig: GitRig, rig_name: str
) -> None:
    """`gastown status` lists the hosts the rigs name: this worker's host with its worker, and a
    host no worker serves as one its rigs wait for (still exit 0: the runtime itself is up)."""
    here = parse_resource(rig_manifest(rig_name, git_rig, host=settings.host))
    gone = parse_resource(rig_manifest(f"{rig_name}-gone", git_rig, host="nowhere-1"))
    for rig in (here, gone):
        await reconciler.apply(rig)
    found = await gastown(settings, "status")
    assert found.code == 0, found.err
    lines = found.out.splitlines()
    ours = [line for line in lines if line.startswith(f"host {settings.host}: ")]
    assert len(ours) == 1 and "1 worker(s)" in ours[0] and rig_name in ours[0]
    queue = f"{settings.task_queue}@nowhere-1"
    assert f"host nowhere-1: no worker polls {queue}; rigs {rig_name}-gone wait for it" in lines


async def test_unknown_kind(settings: Settings) -> None:
    """An unknown kind is refused with the list of kinds."""
    result = await gastown(settings, "get", "mayors")
    assert result.code == 1
    assert (
        "unknown kind 'mayors'; known kinds: beadstores, convoys, polecats, refineries, rigs, witnesses"
        in result.err
    )


async def test_convoy_progress_in_get_and_describe(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """`gastown get convoys` shows the counts and the cost at a glance; `describe` lists each bead's
    polecat and phase."""
    usage = ["--usage", "claude-sonnet-4-5=1000,100"]  # $0.0045 each
    convoy = convoy_manifest("wave", rig_name, ["gt-1", "gt-2"], *usage, parallelism=1)
    applied = await gastown(
        settings, "apply", "-f", write(tmp_path / "c.yaml", rig_manifest(rig_name, git_rig), convoy)
    )
    assert applied.code == 0, applied.err
    assert applied.out.splitlines()[-1] == "convoy.gastown.gastown.io/wave created"

    async def completed() -> str | None:
        result = await gastown(settings, "get", "convoys")
        return result.out if "Completed" in result.out else None

    header, row = (await wait_until(completed, "the convoy completed in `get convoys`", 60)).splitlines()
    assert header.split() == ["NAME", "RIG", "PHASE", "TOTAL", "DONE", "FAILED", "RUNNING", "COST", "AGE"]
    assert row.split()[:8] == ["wave", rig_name, "Completed", "2", "2", "0", "0", "$0.0090"]
    polecats = (await gastown(settings, "get", "polecats")).out
    assert len(polecats.splitlines()) == 3  # the header and the convoy's two polecats

    described = (await gastown(settings, "describe", "convoy", "wave")).out
    assert "Message:      2/2 completed" in described
    assert "Polecats:" in described and "gt-1" in described and "Succeeded" in described


async def test_refinery_queue_from_the_command_line(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """`gastown refinery enqueue/approve/dequeue` drive the queue; `get`/`describe refinery` show it; bad input exits 1."""
    refinery = refinery_manifest("ref", rig_name, autoMerge=False)
    applied = await gastown(
        settings, "apply", "-f", write(tmp_path / "r.yaml", rig_manifest(rig_name, git_rig), refinery)
    )
    assert applied.code == 0, applied.err
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    git_rig.push_branch("polecat/slit", {"slit.txt": "s\n"})
    git_rig.push_branch("polecat/ace", {"ace.txt": "a\n"})

    queued = await gastown(settings, "refinery", "enqueue", "ref", "polecat/nux", "--bead", "gt-1")
    assert (queued.code, queued.out.strip()) == (0, "polecat/nux queued on refinery ref (position 1)")
    both = await gastown(settings, "refinery", "enqueue", "ref", "polecat/slit", "polecat/ace")
    assert both.out.splitlines() == [
        "polecat/slit queued on refinery ref (position 2)",
        "polecat/ace queued on refinery ref (position 3)",
    ]
    bad = await gastown(settings, "refinery", "enqueue", "ref", "polecat/x", "no..dots")
    assert bad.code == 1 and "branch 'no..dots': not a valid git branch name" in bad.err
    mixed = await gastown(settings, "refinery", "enqueue", "ref", "polecat/x", "polecat/y", "--bead", "gt-2")
    assert mixed.code == 1 and "give one BRANCH" in mixed.err
    early = await gastown(settings, "refinery", "approve", "ref", "polecat/zed")
    assert (early.code, early.out.strip()) == (
        0,
        "polecat/zed approved on refinery ref (not queued yet: it lands approved once it is)",
    )
    invalid = await gastown(settings, "refinery", "approve", "ref", "no..dots")
    assert invalid.code == 1 and "branch 'no..dots': not a valid git branch name" in invalid.err

    async def ready() -> str | None:
        described = (await gastown(settings, "describe", "refinery", "ref")).out
        return described if "Phase:        Blocked" in described else None

    described = await wait_until(ready, "polecat/nux tested and waiting for approval")
    assert "Queue:" in described and "polecat/nux" in described and "Ready" in described
    for branch in ("polecat/slit", "polecat/ace"):
        dequeued = await gastown(settings, "refinery", "dequeue", "ref", branch)
        assert dequeued.code == 0, dequeued.err
    approved = await gastown(settings, "refinery", "approve", "ref", "polecat/nux")
    assert approved.code == 0, approved.err

    async def merged() -> str | None:
        table = (await gastown(settings, "get", "refineries")).out
        return table if len(table.splitlines()) == 2 and table.splitlines()[1].split()[5] == "1" else None

    header, row = (await wait_until(merged, "the refinery to merge one")).splitlines()
    assert header.split() == ["NAME", "RIG", "TARGET", "STRATEGY", "PHASE", "MERGED", "AGE"]
    assert row.split()[:6] == ["ref", rig_name, "main", "merge", "Idle", "1"]
    assert set(git_rig.files_on("main")) == {"README.md", "nux.txt"}  # slit and ace were dequeued


async def test_usage_shows_what_agents_spent_by_model_and_by_rig(
    settings: Settings, reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """`gastown usage` adds up the polecats' usage by model and by rig, narrowed by rig and span;
    `get -o wide` shows each polecat's cost; a bad --since is refused naming the rule."""
    agent = ["--usage", "claude-haiku-4-5=1000,200", "--usage", "test-model=5,5"]
    files = write(
        tmp_path / "town.yaml", rig_manifest(rig_name, git_rig), polecat_manifest("nux", rig_name, *agent)
    )
    assert (await gastown(settings, "apply", "-f", files)).code == 0
    await wait_until(lambda: reconciler_phase(reconciler, "nux", "Succeeded"), "nux to succeed", timeout=30)
    report = await gastown(settings, "usage", "--since", "1h")
    assert report.code == 0, report.err
    lines = report.out.splitlines()
    assert any(line.split()[:3] == ["claude-haiku-4-5", "1", "1,000"] and "$0.0020" in line for line in lines)
    assert any(line.split()[:2] == ["test-model", "1"] and "unknown" in line for line in lines)
    assert any(line.split()[:3] == [rig_name, "1", "2"] for line in lines)
    other = await gastown(settings, "usage", "--rig", "another-rig")
    assert other.out.strip() == "No usage recorded."
    wide = await gastown(settings, "get", "polecats", "-o", "wide")
    assert "COST" in wide.out and "unknown" in wide.out  # one model has no price: the total is unknown
    rig_described = await gastown(settings, "describe", "rig", rig_name)
    assert "Usage:        nothing yet by its 0 live polecats" in rig_described.out  # nux is done: see `usage`
    bad = await gastown(settings, "usage", "--since", "yesterday")
    assert bad.code == 1 and "--since yesterday: must be a Go duration" in bad.err


async def reconciler_phase(reconciler: Reconciler, name: str, phase: str) -> bool:
    found = await reconciler.find(Polecat, "default", name)
    return found is not None and found.status is not None and found.status.phase == phase


async def test_nudge_resumes_a_finished_polecat_with_the_follow_up(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path, reconciler: Reconciler
) -> None:
    """`gastown nudge` sends a Succeeded polecat's agent a follow-up: it runs again with the text in
    its prompt, its first commit kept, and `describe` lists the follow-up with its outcome. A bad
    one is refused in one line naming the field and the rule."""
    manifest = polecat_manifest("slit", rig_name, "--commit", "{bead}.txt=made")
    await gastown(
        settings, "apply", "-f", write(tmp_path / "m.yaml", rig_manifest(rig_name, git_rig), manifest)
    )
    await wait_until(lambda: has_phase(settings, "slit", "Succeeded"), "slit to succeed")

    nudged = await gastown(settings, "nudge", "polecat", "slit", "also <b>tests</b>; rm -rf /")
    assert nudged.code == 0, nudged.err
    assert (
        nudged.out.strip() == "polecat.gastown.gastown.io/slit nudged: the agent's session is resumed with it"
    )

    async def followed_up() -> Polecat | None:
        found = await reconciler.get(Polecat, "default", "slit")
        status = found.status
        return found if status and status.follow_ups == 1 and status.phase == "Succeeded" else None

    await wait_until(followed_up, "the follow-up's run to end", timeout=60)
    described = await gastown(settings, "describe", "polecat", "slit")
    assert "Follow-ups:" in described.out and "also <b>tests</b>; rm -rf /" in described.out
    assert "Succeeded" in described.out.split("Follow-ups:")[1]
    log = await gastown(settings, "logs", "polecat", "slit")
    assert "also <b>tests</b>; rm -rf /" in log.out  # the second run's prompt, as data
    assert "gt-test1.txt already committed" in log.out  # the first run's commit, kept

    refused = await gastown(settings, "nudge", "polecat", "slit", "   ")
    assert refused.code == 1
    assert "message: String should have at least 1 character" in refused.err


async def test_diff_shows_a_polecats_work_from_its_worktree_or_its_remote(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """`gastown diff` shows what the polecat's branch changed since the base: from its worktree on
    this machine, and, from a machine without it (another home), from the rig's remote the branch
    was pushed to; `--stat` summarises it."""
    manifest = polecat_manifest("dag", rig_name, "--commit", "notes/{bead}.md=made by dag")
    await gastown(
        settings, "apply", "-f", write(tmp_path / "m.yaml", rig_manifest(rig_name, git_rig), manifest)
    )
    await wait_until(lambda: has_phase(settings, "dag", "Succeeded"), "dag to succeed")

    local = await gastown(settings, "diff", "polecat", "dag")
    assert local.code == 0, local.err
    assert "+++ b/notes/gt-test1.md" in local.out and "+made by dag" in local.out
    stat = await gastown(settings, "diff", "polecat", "dag", "--stat")
    assert "notes/gt-test1.md | 1 +" in stat.out and "+++" not in stat.out

    elsewhere = settings.model_copy(update={"home": tmp_path / "another-home"})
    remote = await gastown(elsewhere, "diff", "polecat", "dag")
    assert remote.code == 0, remote.err
    assert remote.out == local.out  # the pushed branch: the same work


# An agent that shows it runs, then waits for a line typed into its terminal and keeps it.
TYPED_INTO = (
    "import sys; print('ready for a line', flush=True); line = input(); open(sys.argv[1], 'w').write(line)"
)


async def attached(settings: Settings, name: str, *options: str, typing: bytes) -> bytes:
    """`gastown attach` in a terminal of its own (a pty): what the terminal showed once the agent's
    screen was there and `typing` was typed, then detached (C-b d)."""
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        GASTOWN, "attach", "polecat", name, *options,
        env={**env_of(settings), "TERM": "xterm"}, stdin=terminal, stdout=terminal, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    shown = b""
    loop = asyncio.get_running_loop()

    async def read_until(wanted: bytes, then_type: bytes = b"") -> None:
        """Read the terminal until it shows `wanted`, typing `then_type` again each second meanwhile."""
        nonlocal shown
        deadline = loop.time() + 30
        while wanted not in shown:
            assert loop.time() < deadline, f"the terminal never showed {wanted!r}: {shown[-500:]!r}"
            if then_type:
                os.write(controller, then_type)
            ready: tuple[list[int], list[int], list[int]] = await loop.run_in_executor(
                None, select.select, [controller], [], [], 1.0
            )
            if ready[0]:
                shown += os.read(controller, 65536)

    try:
        await read_until(b"ready for a line")
        await read_until(b"[gt-")  # tmux's status line: it has taken over the terminal
        os.write(controller, typing)
        # C-b d: detach. Keys that come with tmux's own start-up exchange are lost: it is typed again.
        await read_until(b"[detached", then_type=b"\x02d")
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        os.close(controller)
    return shown


async def test_attach_watches_the_session_and_types_only_with_write(
    settings: Settings, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """`gastown attach` shows the agent's live terminal; read-only, what is typed never reaches it;
    with --write it does. Detaching leaves the agent running."""
    typed = tmp_path / "typed"
    manifest = polecat_manifest(
        "toast", rig_name, agentConfig={"command": ["python3", "-c", TYPED_INTO, str(typed)]}
    )
    await gastown(
        settings, "apply", "-f", write(tmp_path / "m.yaml", rig_manifest(rig_name, git_rig), manifest)
    )
    await wait_until(lambda: has_phase(settings, "toast", "Working"), "toast to work")

    await attached(settings, "toast", typing=b"not for the agent\r")
    assert not typed.exists() and await has_phase(settings, "toast", "Working")  # detached: it goes on

    await attached(settings, "toast", "--write", typing=b"for the agent\r")
    await wait_until(lambda: has_phase(settings, "toast", "Succeeded"), "toast to take the line and end")
    assert typed.read_text() == "for the agent"
