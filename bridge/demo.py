"""`gastown demo`: one polecat works one bead on a sample rig, on the embedded runtime.

It makes a small project (a git repository with a bare remote) under
`<home>/demo/`, writes the manifests it applies beside it, applies them
through the same reconcile core as `gastown apply`, and narrates what
happens until the polecat is Succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml
from git import Actor, Repo

from bridge.reconcile import NotFound, Reconciler, workflow_id_of
from crds import Polecat, parse_resource
from worker.client import connect
from worker.embedded import EmbeddedRuntime
from worker.settings import Settings

NAMESPACE = "demo"
RIG = "demo-athena"
POLECAT = "furiosa"
AGENT = Path(__file__).resolve().parents[1] / "examples" / "agents" / "scripted_agent.py"
TASK = "Add a greeting module and a CHANGELOG entry for bead at-0001."


def make_sample_rig(root: Path) -> tuple[Path, Path]:
    """A project checkout and its bare remote, with one commit on main."""
    remote, checkout = root / "athena.git", root / "athena"
    Repo.init(remote, bare=True, initial_branch="main")
    repo = Repo.clone_from(remote, checkout)
    (checkout / "README.md").write_text("# athena\n\nA sample rig for the Gas Town demo.\n")
    repo.index.add(["README.md"])
    author = Actor("Gas Town demo", "demo@gastown.local")
    repo.index.commit("Initial commit", author=author, committer=author)
    repo.git.branch("-M", "main")
    repo.git.push("origin", "main")
    return checkout, remote


def manifests(checkout: Path, remote: Path) -> list[dict[str, Any]]:
    agent = [
        sys.executable,
        str(AGENT),
        "--say", "reading the bead",
        "--say", "planning the change",
        "--say", "writing code",
        "--commit", "athena/greeting.py=def greet(name: str) -> str:\n    return f'hello, {name}'",
        "--commit", "CHANGELOG.md=- at-0001: add a greeting module",
        "--say", "committing the change",
        "--pause", "0.4",
    ]  # fmt: skip
    return [
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Rig",
            "metadata": {"name": RIG},
            "spec": {
                "gitURL": str(remote),
                "localPath": str(checkout),
                "defaultBranch": "main",
                "beadsPrefix": "at",
            },
        },
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Polecat",
            "metadata": {"name": POLECAT, "namespace": NAMESPACE},
            "spec": {
                "rig": RIG,
                "desiredState": "Working",
                "beadID": "at-0001",
                "taskDescription": TASK,
                "agent": "custom",
                "agentConfig": {"command": agent},
            },
        },
    ]


async def run_demo(settings: Settings) -> None:
    say = click.echo
    started = time.monotonic()
    say(click.style("1. Starting the embedded runtime", bold=True))
    for line in await EmbeddedRuntime(settings).up():
        say(f"   {line}")
    root = settings.home / "demo" / datetime.now().strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True)
    checkout, remote = make_sample_rig(root)
    documents = manifests(checkout, remote)
    manifest_file = root / "manifests.yaml"
    manifest_file.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    say(click.style("2. A sample rig", bold=True))
    say(f"   project {checkout} (remote {remote})")
    say(f"   manifests {manifest_file}")

    reconciler = Reconciler(await connect(settings), settings.task_queue, home=settings.home)
    with contextlib.suppress(NotFound):  # the demo can run again: its previous polecat goes first
        await reconciler.delete(Polecat, NAMESPACE, POLECAT)
    say(click.style("3. Applying (the same path as `gastown apply -f`)", bold=True))
    for document in documents:
        resource = parse_resource(document)
        say(
            f"   {resource.INFO.singular}.gastown.gastown.io/{resource.name} {await reconciler.apply(resource)}"
        )

    say(click.style("4. The polecat at work", bold=True))
    polecat = await _follow(reconciler)
    status = polecat.status
    assert status is not None
    say(click.style("5. Result", bold=True))
    colour = "green" if status.phase == "Succeeded" else "red"
    say(f"   phase    {click.style(status.phase, fg=colour, bold=True)}: {status.message.splitlines()[0]}")
    say(f"   branch   {status.branch} at {status.commit}")
    graph = subprocess.run(
        ["git", "-C", str(remote), "log", "--oneline", "--graph", "--decorate", "--all"],
        capture_output=True,
        text=True,
    )
    say("   remote   " + "\n            ".join(graph.stdout.splitlines()))
    say(f"   history  {settings.workflow_url(workflow_id_of(Polecat, NAMESPACE, POLECAT))}")
    say(f"   took     {time.monotonic() - started:.1f}s")
    say("")
    say(
        f"Look around: gastown get polecats -n {NAMESPACE} -o wide; gastown describe polecat {POLECAT} -n {NAMESPACE}"
    )
    say(f"The runtime keeps running (Temporal UI {settings.ui_url}); stop it with: gastown down")
    if status.phase != "Succeeded":
        raise click.ClickException("the demo polecat did not succeed")


async def _follow(reconciler: Reconciler, timeout: float = 120.0) -> Polecat:
    """Print phase changes and the agent's new output until the polecat is done."""
    deadline = time.monotonic() + timeout
    phase, printed = "", 0
    while time.monotonic() < deadline:
        polecat = await reconciler.get(Polecat, NAMESPACE, POLECAT)
        assert isinstance(polecat, Polecat)
        status = polecat.status
        if status and status.phase != phase:
            phase = status.phase
            click.echo(
                f"   [{time.strftime('%H:%M:%S')}] phase {click.style(phase, bold=True)}  {status.message.splitlines()[0] if status.message else ''}"
            )
        if status and status.log_file and Path(status.log_file).exists():
            lines = Path(status.log_file).read_text(errors="replace").splitlines()
            for line in lines[printed:]:
                if line.strip():
                    click.echo(click.style(f"      agent | {line.rstrip()}", dim=True))
            printed = len(lines)
        if phase in ("Succeeded", "Failed", "Terminated"):
            return polecat
        await asyncio.sleep(0.1)
    raise click.ClickException(f"the demo polecat did not finish within {timeout:.0f}s")
