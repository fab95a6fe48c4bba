"""`gastown demo`: the whole town at work on a sample rig, on the embedded runtime.

From nothing: the embedded runtime, a sample project in a temporary directory
and the town of `cli.town` applied through the same reconcile core as
`gastown apply`. A live board shows each bead's polecat, the Refinery and
what the Witness told the webhook the demo listens on; at the end, a summary
table, main's graph and where each history is in the Temporal UI. Everything
the demo started is stopped: its resources are deleted (their agents end)
and the runtime goes down unless it was already up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import webbrowser
from collections.abc import AsyncIterator
from pathlib import Path

import click
from aiohttp import web

from bridge.reconcile import NotFound, Reconciler, workflow_id_of
from cli.town import BEADS, BEADSTORE, CONVOY, FAILS, NAMESPACE, REFINERY, RIG, STALLS, WITNESS, make_town
from client.connection import connect
from client.settings import Settings
from crds import BeadStore, Convoy, Polecat, Refinery, Rig, Witness, parse_resource
from crds.common import Resource
from crds.polecat import PolecatStatus
from worker.embedded import EmbeddedRuntime

TIMEOUT = 110.0  # the demo's promise is under two minutes
WEBHOOK_PATH = "/services/demo/webhook"
ALERTS = ("Stuck: ", "Failed: ", "Recovered: ")  # how a Witness's alert lines begin


@contextlib.asynccontextmanager
async def webhook(messages: list[str]) -> AsyncIterator[str]:
    """A local Slack-style incoming webhook; the first line of each alert it receives is appended to
    `messages` (a message is a heading, then each alert, which may carry the agent's output). Its URL."""

    async def receive(request: web.Request) -> web.Response:
        text = str((await request.json()).get("text", ""))
        messages.extend(line for line in text.splitlines() if line.startswith(ALERTS))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, receive)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    listener = socket.create_server(("127.0.0.1", 0))  # a free port, known before serving
    port = listener.getsockname()[1]
    await web.SockSite(runner, listener).start()
    try:
        yield f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    finally:
        await runner.cleanup()


class Board:
    """The live view: one line per bead, the Refinery's, then the webhook's messages. On a terminal it
    is redrawn in place; elsewhere only lines that changed are printed."""

    def __init__(self) -> None:
        self.live = sys.stdout.isatty()
        self.drawn: list[str] = []

    def show(self, lines: list[str]) -> None:
        if self.live:
            if self.drawn:
                click.echo(f"\x1b[{len(self.drawn)}F\x1b[J", nl=False)
            click.echo("\n".join(lines))
        else:
            for line in lines:
                if line not in self.drawn:
                    click.echo(line)
        self.drawn = lines


def _phase(status: PolecatStatus) -> str:
    """The polecat's phase, or Merged once the Refinery landed its branch."""
    merged = any(c.type == "Merged" and c.status == "True" for c in status.conditions)
    return "Merged" if merged else status.phase


def _bead_line(bead: str, polecat: Polecat | None) -> str:
    title = BEADS[bead]
    if polecat is None or polecat.status is None:
        return f"   {bead}  {title:<26} waiting"
    status = polecat.status
    phase = _phase(status)
    colour = {"Merged": "green", "Succeeded": "cyan", "Failed": "red", "Working": "yellow"}.get(phase)
    restarts = f" (restarted {status.restarts}x)" if status.restarts else ""
    return f"   {bead}  {title:<26} {polecat.name:<16} {click.style(f'{phase:<9}', fg=colour)}{restarts}"


async def _polecats(reconciler: Reconciler) -> dict[str, Polecat]:
    """The convoy's polecats, by bead."""
    found: dict[str, Polecat] = {}
    for polecat in await reconciler.list(Polecat, NAMESPACE):
        assert isinstance(polecat, Polecat)
        if polecat.spec.bead_id:
            found[polecat.spec.bead_id] = polecat
    return found


async def _watch(reconciler: Reconciler, messages: list[str], board: Board) -> dict[str, Polecat]:
    """Redraw the board until every bead's polecat is done and every good branch merged."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        polecats = await _polecats(reconciler)
        refinery = await reconciler.get(Refinery, NAMESPACE, REFINERY)
        assert isinstance(refinery, Refinery)
        merged = refinery.status.merged if refinery.status else 0
        lines = [_bead_line(bead, polecats.get(bead)) for bead in BEADS]
        doing = refinery.status.message[:40] if refinery.status else ""  # one line, however long
        lines.append(f"   refinery  {merged} merged into main  {doing}")
        lines += [click.style(f"   webhook | {message}", dim=True) for message in messages]
        board.show(lines)
        done = [p.status for p in polecats.values() if p.status and p.status.phase in ("Succeeded", "Failed")]
        landed = all(_phase(status) == "Merged" for status in done if status.phase == "Succeeded")
        if len(done) == len(BEADS) and landed and messages:  # as the summary shows them: each good one Merged
            return polecats
        if time.monotonic() > deadline:
            raise click.ClickException(f"the demo did not finish within {TIMEOUT:.0f}s")
        await asyncio.sleep(0.25)


async def run_demo(settings: Settings) -> None:
    say = click.echo
    started = time.monotonic()
    runtime = EmbeddedRuntime(settings)
    was_up = runtime.server.pid() is not None and runtime.worker.pid() is not None
    say(click.style("1. The embedded runtime", bold=True))
    for line in await runtime.up():
        say(f"   {line}")
    if runtime.board_url and os.environ.get("DISPLAY"):  # a desktop: the town, live, in a browser
        webbrowser.open(runtime.board_url)
    root = Path(tempfile.mkdtemp(prefix="gastown-demo-"))
    messages: list[str] = []
    reconciler = Reconciler(await connect(settings), settings.task_queue, home=settings.home)
    try:
        async with webhook(messages) as url:
            await _clear(reconciler)  # what an interrupted run may have left
            town = make_town(root, url)
            say(click.style("2. A sample rig", bold=True))
            say(f"   project {town.checkout} (remote {town.remote}); webhook {url}")
            say(click.style("3. The town, applied (the same path as `gastown apply -f`)", bold=True))
            for document in town.manifests:
                resource = parse_resource(document)
                outcome = await reconciler.apply(resource)
                say(f"   {resource.INFO.singular}.gastown.gastown.io/{resource.name} {outcome}")
            say(click.style(f"4. At work: {STALLS} will go quiet, {FAILS} will fail", bold=True))
            polecats = await _watch(reconciler, messages, Board())
        say(click.style("5. Result", bold=True))
        _summary(polecats)
        graph = subprocess.run(
            ["git", "-C", str(town.remote), "log", "--oneline", "--graph", "main"],
            capture_output=True,
            text=True,
        )
        say("   main:\n" + "\n".join(f"     {line}" for line in graph.stdout.splitlines()))
        say("   histories in the Temporal UI (while it runs: `gastown up`):")
        for kind, name in ((Convoy, CONVOY), (Refinery, REFINERY), (Witness, WITNESS)):
            say(f"     {settings.workflow_url(workflow_id_of(kind, NAMESPACE, name))}")
        say(f"   took {time.monotonic() - started:.1f}s; the project stays in {root}")
    finally:
        say(click.style("6. Clearing up", bold=True))
        await _clear(reconciler)
        if not was_up:
            for line in runtime.down():
                say(f"   {line}")


def _summary(polecats: dict[str, Polecat]) -> None:
    click.echo(f"   {'bead':<8} {'polecat':<16} {'phase':<10} {'restarts':<9} commit / why")
    for bead in BEADS:
        polecat = polecats[bead]
        status = polecat.status
        assert status is not None
        phase = _phase(status)
        said = [line for line in status.message.splitlines() if line.strip()]
        detail = (status.commit or "")[:12] if phase != "Failed" else f"{said[0]} {said[-1]}"
        click.echo(f"   {bead:<8} {polecat.name:<16} {phase:<10} {status.restarts:<9} {detail}")


async def _clear(reconciler: Reconciler) -> None:
    """Delete what the demo applies, the convoy first (its polecats and their agents go with it)."""
    kinds: list[tuple[type[Resource], str | None, str]] = [
        (Convoy, NAMESPACE, CONVOY),
        (Witness, NAMESPACE, WITNESS),
        (Refinery, NAMESPACE, REFINERY),
        (BeadStore, NAMESPACE, BEADSTORE),
        (Rig, None, RIG),
    ]
    for kind, namespace, name in kinds:
        with contextlib.suppress(NotFound):
            await reconciler.delete(kind, namespace, name)
