"""`gastown`: the command line, and on a laptop the bridge from manifests to Temporal.

Exit codes: 0 done, 1 refused input, 2 the runtime could not be reached.
One line per problem; a traceback only with --debug.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from cli import render
from client.errors import RuntimeUnavailable
from client.reads import find, listed, workflow_id_of
from client.settings import Settings
from client.tracing import flush_traces
from client.usage import with_live_usage
from crds import InvalidResource, Polecat, Refinery, Resource, Rig, kind_for
from crds.common import check_branch_name, parse_duration
from crds.convoy import CONVOY_LABEL
from crds.polecat import LIVE_PHASES

# Imported by the commands that use them: a read command never loads the SDK, kopf or the
# kubernetes client (about 0.4 s of a new process; docs/benchmarks.md).
if TYPE_CHECKING:
    from bridge.reconcile import Reconciler
    from client.reads import Reads

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2


class Refused(click.ClickException):
    exit_code = EXIT_REFUSED

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


class Unreachable(click.ClickException):
    exit_code = EXIT_UNREACHABLE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _run(coroutine_function: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async command, turning known failures into one line and an exit code."""

    @functools.wraps(coroutine_function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            asyncio.run(coroutine_function(*args, **kwargs))
        except InvalidResource as error:
            raise Refused(str(error)) from None
        except (RuntimeUnavailable, ConnectionError, TimeoutError) as error:
            raise Unreachable(str(error) or type(error).__name__) from None
        except click.ClickException:
            raise
        except Exception as error:
            if debug:
                raise
            raise Unreachable(f"{type(error).__name__}: {error}") from None

    return wrapper


metrics_option = click.option(
    "--metrics", envvar="GASTOWN_METRICS", default=None, help="HOST:PORT to serve Prometheus metrics on."
)


def _settings_with(metrics: str | None) -> Settings:
    settings = _settings()
    return settings.model_copy(update={"metrics": metrics}) if metrics else settings


def _settings() -> Settings:
    return Settings()


async def _reconciler(settings: Settings) -> Reconciler:
    from bridge.reconcile import Reconciler
    from client.connection import connect

    try:
        client = await connect(settings)
    except Exception as error:
        raise RuntimeUnavailable(
            f"cannot reach Temporal at {settings.temporal_address} ({error}); start it with `gastown up`"
        ) from None
    return Reconciler(client, settings.task_queue, home=settings.home)


async def _reads(settings: Settings) -> Reads:
    """Where a read command reads: Temporal's HTTP API where it answers (no SDK to load), else the
    SDK's client."""
    if settings.temporal_http_address:
        from client.http_api import TemporalHttp

        http = TemporalHttp(
            settings.temporal_http_address, settings.temporal_namespace, lambda: _sdk_reads(settings)
        )
        if await asyncio.to_thread(http.answers):
            return http
    return await _sdk_reads(settings)


async def _sdk_reads(settings: Settings) -> Reads:
    from client.visibility import SdkReads

    return SdkReads((await _reconciler(settings)).client)


def _kind(word: str) -> type[Resource]:
    try:
        return kind_for(word)
    except KeyError as error:
        raise Refused(f"error: {error.args[0]}") from None


def _not_found(model: type[Resource], name: str) -> NoReturn:
    raise Refused(f'Error: {model.INFO.plural} "{name}" not found')


@click.group()
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def cli(debug: bool) -> None:
    """Gas Town: coding agents run durably on Temporal."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)


namespace_option = click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")


# --- the embedded runtime ----------------------------------------------------


@cli.command()
@_run
async def up() -> None:
    """Start the embedded runtime: Temporal dev server (UI on :8233) and a worker."""
    from worker.embedded import EmbeddedRuntime

    for line in await EmbeddedRuntime(_settings()).up():
        click.echo(line)


@cli.command()
@_run
async def demo() -> None:
    """Run one polecat on a sample rig on the embedded runtime, and narrate it."""
    from cli.demo import run_demo

    await run_demo(_settings())


@cli.command()
def down() -> None:
    """Stop the embedded runtime. Agents keep running in tmux and are adopted on `up`."""
    from worker.embedded import EmbeddedRuntime

    for line in EmbeddedRuntime(_settings()).down():
        click.echo(line)


@cli.command()
@_run
async def status() -> None:
    """Is the runtime up? Exit 0 when Temporal answers and a worker polls the task queue, else 2.

    Then each host a rig names, with the workers polling its queue: a host with none holds its
    rigs' local work until one comes back.
    """
    from bridge.reconcile import Reconciler
    from contracts.names import host_queue
    from worker.embedded import EmbeddedRuntime, has_poller, host_workers, wait_for_server

    settings = _settings()
    try:
        client = await wait_for_server(settings, timeout=5)
    except RuntimeUnavailable:
        raise Unreachable(
            f"Temporal at {settings.temporal_address} does not answer; start it with `gastown up`"
        ) from None
    if not await has_poller(client, settings):
        raise Unreachable(f"no worker polls task queue {settings.task_queue} on {settings.temporal_address}")
    click.echo(f"ok: Temporal {settings.temporal_address}, a worker polls {settings.task_queue}")
    board = EmbeddedRuntime(settings).board_url
    if board:
        click.echo(f"town board on {board}")
    rigs: dict[str, list[str]] = {}
    for rig in await Reconciler(client, settings.task_queue).list(Rig, None):
        if rig.host is not None:
            rigs.setdefault(rig.host, []).append(rig.name)
    for host, names in sorted(rigs.items()):
        workers = await host_workers(client, settings, host)
        served = f"rigs {', '.join(sorted(names))}"
        if workers:
            click.echo(f"host {host}: {len(workers)} worker(s) ({', '.join(workers)}); {served}")
        else:
            click.echo(
                f"host {host}: no worker polls {host_queue(settings.task_queue, host)}; {served} wait for it"
            )


@cli.command()
@click.option(
    "-n", "--namespace", "namespaces", multiple=True, help="Watch only these namespaces (default: all)."
)
@click.option("--liveness", default=None, help="Serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option(
    "--standalone", is_flag=True, help="The only bridge: no peering (no kopf.dev resources needed)."
)
@metrics_option
@_run
async def bridge(
    namespaces: tuple[str, ...], liveness: str | None, standalone: bool, metrics: str | None
) -> None:
    """Watch Gas Town resources in Kubernetes and keep their workflows in step.

    Bridges peer (kopf's peering, deploy/peering.yaml): the oldest one acts, the others stand by.
    """
    from bridge.kubernetes import run_bridge

    logging.getLogger().setLevel(logging.INFO)
    await run_bridge(_settings_with(metrics), namespaces, liveness=liveness, standalone=standalone)


@cli.command()
@metrics_option
@_run
async def worker(metrics: str | None) -> None:
    """Run a worker against TEMPORAL_ADDRESS (settings from the environment)."""
    from worker.main import run_worker

    logging.getLogger().setLevel(logging.INFO)
    await run_worker(_settings_with(metrics))


@cli.command()
@click.option("--address", default=None, help="HOST:PORT to serve on (default 127.0.0.1:GASTOWN_BOARD_PORT).")
@click.option(
    "--token", envvar="GASTOWN_BOARD_TOKEN", default=None, help="The actions' token (default: a new one)."
)
@metrics_option
@_run
async def board(address: str | None, token: str | None, metrics: str | None) -> None:
    """Serve the town board: a live web page of the town, with the CLI's actions."""
    from board.server import serve_board

    settings = _settings_with(metrics)
    host, _, port = (address or f"127.0.0.1:{settings.board_port}").rpartition(":")
    await serve_board(settings, host or "127.0.0.1", int(port), token)


# --- resources ---------------------------------------------------------------


@cli.command()
@click.option(
    "-f", "--filename", "sources", multiple=True, required=True, help="File, directory or - for stdin."
)
@namespace_option
@_run
async def apply(sources: tuple[str, ...], namespace: str) -> None:
    """Create or update resources from manifests (all or nothing if any is invalid)."""
    from bridge.reconcile import APPLY_ORDER, Seen
    from cli import manifests

    resources = manifests.load(list(sources), namespace)
    reconciler = await _reconciler(_settings())
    seen: Seen = {}
    problems = await reconciler.problems(resources, seen)
    if problems:
        raise InvalidResource("", problems)
    for resource in sorted(resources, key=lambda r: APPLY_ORDER.index(r.INFO.kind)):
        outcome = await reconciler.apply(resource, seen)
        click.echo(f"{resource.INFO.singular}.gastown.gastown.io/{resource.name} {outcome}")


@cli.command()
@click.argument("kind")
@click.argument("name", required=False)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across namespaces.")
@click.option("-o", "--output", type=click.Choice(["wide", "json", "yaml"]), default=None)
@_run
async def get(kind: str, name: str | None, namespace: str, all_namespaces: bool, output: str | None) -> None:
    """List resources of a kind, or show one (`providers`: the provider gates)."""
    settings = _settings()
    if kind in ("provider", "providers"):
        from client.visibility import provider_gates

        gates = await provider_gates((await _reconciler(settings)).client)
        click.echo(render.provider_table(gates) if gates else "No gated providers (GASTOWN_PROVIDER_LIMITS).")
        return
    model = _kind(kind)
    reads = await _reads(settings)
    if name:
        found = await find(reads, model, namespace, name)
        if found is None:
            _not_found(model, name)
        resources = [found]
    else:
        resources = await listed(reads, model, None if all_namespaces else namespace)
    if output is not None:  # the forms that show usage: brought up to now
        await with_live_usage(reads, [r for r in resources if isinstance(r, Polecat)])
    if output in ("json", "yaml"):
        wires = [resource.to_wire() for resource in resources]
        data: Any = wires[0] if name else {"apiVersion": "v1", "kind": "List", "items": wires}
        click.echo(json.dumps(data, indent=2) if output == "json" else render.yaml_of(data))
    elif not resources:
        click.echo(
            f"No {model.INFO.plural} found in {'any' if all_namespaces else namespace} namespace.", err=True
        )
    else:
        click.echo(render.table(model, resources, wide=output == "wide", all_namespaces=all_namespaces))


@cli.command()
@click.argument("kind")
@click.argument("name")
@namespace_option
@_run
async def describe(kind: str, name: str, namespace: str) -> None:
    """Show one resource: status, conditions and its Temporal UI link."""
    model = _kind(kind)
    settings = _settings()
    reads = await _reads(settings)
    resource = await find(reads, model, namespace, name)
    if resource is None:
        _not_found(model, name)
    if isinstance(resource, Polecat):
        await with_live_usage(reads, [resource])
    click.echo(render.describe(resource, settings.workflow_url(workflow_id_of(model, namespace, name))))
    if isinstance(resource, Rig):  # what its live polecats are spending now (`gastown usage --rig`: all)
        polecats = await listed(reads, Polecat, None)
        live = [p for p in polecats if p.spec.rig == name and p.status and p.status.phase in LIVE_PHASES]
        await with_live_usage(reads, live)
        click.echo(render.rig_usage(live))
    session = resource.status.tmux_session if isinstance(resource, Polecat) and resource.status else None
    if session:
        click.echo(f"Attach:       tmux -L {settings.tmux_socket} attach -t {session}")


@cli.command()
@click.argument("kind")
@click.argument("name")
@namespace_option
@_run
async def delete(kind: str, name: str, namespace: str) -> None:
    """Delete a resource: its work is stopped first (a polecat's worktree stays)."""
    from bridge.reconcile import NotFound

    model = _kind(kind)
    reconciler = await _reconciler(_settings())
    try:
        await reconciler.delete(model, namespace, name)
    except NotFound:
        _not_found(model, name)
    click.echo(f'{model.INFO.singular}.gastown.gastown.io "{name}" deleted')


@cli.command()
@click.argument("kind", type=click.Choice(["polecat", "polecats", "pc"]))
@click.argument("name")
@namespace_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until it is Terminated.")
@_run
async def terminate(kind: str, name: str, namespace: str, wait: bool) -> None:
    """Terminate a polecat: its agent's processes and session are ended."""
    from bridge.reconcile import NotFound

    reconciler = await _reconciler(_settings())
    try:
        await reconciler.signal(Polecat, namespace, name, "terminate")
    except NotFound:
        _not_found(Polecat, name)
    deadline = time.monotonic() + 60
    while wait:
        polecat = await reconciler.get(Polecat, namespace, name)
        if polecat.status and polecat.status.phase == "Terminated":
            break
        if time.monotonic() > deadline:
            raise Unreachable("the polecat did not reach Terminated within 60s; is a worker running?")
        await asyncio.sleep(0.05)
    click.echo(f"polecat.gastown.gastown.io/{name} {'terminated' if wait else 'terminating'}")


@cli.command()
@click.argument("kind", type=click.Choice(["polecat", "polecats", "pc"]))
@click.argument("name")
@click.option("--stat", is_flag=True, help="Only the files changed and how much.")
@namespace_option
@_run
async def diff(kind: str, name: str, stat: bool, namespace: str) -> None:
    """Show a polecat's work: its branch against the base it started from (from its worktree on this
    machine, else from the remote it was pushed to)."""
    from client.diffs import NoDiff, polecat_diff  # GitPython: only this command needs it

    settings = _settings()
    reconciler = await _reconciler(settings)
    polecat = await reconciler.find(Polecat, namespace, name)
    if polecat is None:
        _not_found(Polecat, name)
    rig = await reconciler.find(Rig, None, polecat.spec.rig)
    if rig is None:
        raise Refused(f"error: polecat {name}: its rig {polecat.spec.rig} is not running")
    try:
        shown = await asyncio.to_thread(polecat_diff, polecat, rig, settings.home, stat)
    except NoDiff as error:
        raise Refused(f"error: {error}") from None
    click.echo(shown, nl=bool(shown))


@cli.command()
@click.argument("kind", type=click.Choice(["polecat", "polecats", "pc"]))
@click.argument("name")
@namespace_option
@_run
async def restart(kind: str, name: str, namespace: str) -> None:
    """Restart a Working or Failed polecat: a new attempt of its agent, its work kept."""
    click.echo(f"polecat.gastown.gastown.io/{name} {await _polecat_update(namespace, name, 'restart')}")


async def _polecat_update(namespace: str, name: str, update: str, *args: Any) -> Any:
    """Send a running polecat an update; its refusal is a one-line error (exit 1)."""
    from bridge.reconcile import NotFound

    reconciler = await _reconciler(_settings())
    try:
        return await reconciler.update(Polecat, namespace, name, update, *args)
    except NotFound:
        _not_found(Polecat, name)


@cli.command()
@click.argument("kind", type=click.Choice(["polecat", "polecats", "pc"]))
@click.argument("name")
@click.argument("message")
@namespace_option
@_run
async def nudge(kind: str, name: str, message: str, namespace: str) -> None:
    """Send a polecat's agent a follow-up MESSAGE, in its session, its work kept: a working agent
    gets it when its current run ends; a finished one is resumed with it."""
    what = await _polecat_update(namespace, name, "follow_up", message)
    click.echo(f"polecat.gastown.gastown.io/{name} nudged: {what}")


@cli.command()
@click.argument("kind", type=click.Choice(["polecat", "polecats", "pc"]))
@click.argument("name")
@namespace_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the agent stops.")
@_run
async def logs(kind: str, name: str, namespace: str, follow: bool) -> None:
    """Print a polecat agent's output: its log file, or its pod's log."""
    settings = _settings()
    reconciler = await _reconciler(settings)
    polecat = await _polecat(reconciler, namespace, name)
    if polecat.spec.execution_mode == "kubernetes":
        await _pod_log(settings, polecat, follow)
        return
    log_file = polecat.status.log_file if polecat.status else None
    while follow and not log_file:
        await asyncio.sleep(0.2)
        polecat = await reconciler.get(Polecat, namespace, name)
        assert isinstance(polecat, Polecat) and polecat.status is not None
        log_file = polecat.status.log_file
    if not log_file:
        raise Refused(
            f"polecat {name} has no output yet (phase {polecat.status.phase if polecat.status else 'Pending'})"
        )
    await _print_log(Path(log_file), reconciler, polecat if follow else None)


@cli.command()
@click.argument("kind", type=click.Choice(["polecat", "polecats", "pc"]))
@click.argument("name")
@namespace_option
@click.option("--write", is_flag=True, help="Type into the session too (default: watch only).")
@_run
async def attach(kind: str, name: str, namespace: str, write: bool) -> None:
    """Watch a polecat's agent live: its tmux session, read-only unless --write (detach with C-b d;
    the agent goes on), or a pod's log as it grows."""
    from cli.sessions import CannotLook, attach_argv

    settings = _settings()
    polecat = await _polecat(await _reconciler(settings), namespace, name)
    if polecat.spec.execution_mode == "kubernetes":
        if write:
            raise Refused(f"error: polecat {name}: a pod's agent takes no input; attach without --write")
        await _pod_log(settings, polecat, follow=True)
        return
    try:
        argv = attach_argv(settings, polecat, write)
    except CannotLook as error:
        raise Refused(f"error: {error}") from None
    os.execvp(argv[0], argv)  # this terminal becomes the session's, until it detaches


async def _polecat(reconciler: Reconciler, namespace: str, name: str) -> Polecat:
    polecat = await reconciler.find(Polecat, namespace, name)
    if polecat is None:
        _not_found(Polecat, name)
    return polecat


async def _pod_log(settings: Settings, polecat: Polecat, follow: bool) -> None:
    from cli.sessions import CannotLook, print_pod_log  # the kubernetes client: only pods need it

    try:
        await print_pod_log(settings, polecat, follow)
    except CannotLook as error:
        raise Refused(f"error: {error}") from None


@cli.command()
@click.option("--rig", help="Only this rig's polecats.")
@click.option("--convoy", help="Only the polecats this convoy spawned.")
@click.option("--since", help="Only polecats working at some time in this past span: 24h, 90m, 7d.")
@click.option("-n", "--namespace", default=None, help="Only this namespace (default: every one).")
@_run
async def usage(rig: str | None, convoy: str | None, since: str | None, namespace: str | None) -> None:
    """What agents spent (tokens, requests, cost), by model and by rig."""
    try:
        window = _span(since) if since else None
    except ValueError as error:
        raise Refused(f"error: --since {since}: {error}") from None
    reads = await _reads(_settings())
    polecats = await listed(reads, Polecat, namespace)
    if rig:
        polecats = [p for p in polecats if p.spec.rig == rig]
    if convoy:
        polecats = [p for p in polecats if p.metadata.labels.get(CONVOY_LABEL) == convoy]
    if window is not None:
        start = datetime.now(UTC) - window
        polecats = [
            p
            for p in polecats
            if p.status and (p.status.completion_time is None or p.status.completion_time >= start)
        ]
    await with_live_usage(reads, polecats)
    click.echo(render.usage_report(polecats))


def _span(text: str) -> timedelta:
    """A Go duration (24h, 90m), or whole days (7d)."""
    if text.endswith("d") and text[:-1].isdigit():
        return timedelta(days=int(text[:-1]))
    return parse_duration(text)


async def _print_log(path: Path, reconciler: Reconciler, follow: Polecat | None) -> None:
    """Print the file; with `follow`, keep printing until the polecat leaves Working."""
    with path.open("rb") as stream:
        while True:
            chunk = stream.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            if follow is None:
                return
            current = await reconciler.get(Polecat, follow.namespace, follow.name)
            if current.status and current.status.phase not in ("Pending", "Idle", "Working"):
                sys.stdout.buffer.write(stream.read())
                return
            await asyncio.sleep(0.2)


# --- the merge queue -----------------------------------------------------------


@cli.group()
def refinery() -> None:
    """A Refinery's merge queue: queue a branch, approve one to land, take one out."""


async def _refinery_update(name: str, namespace: str, update: str, argument: Any) -> Any:
    """Send an update to a running Refinery; its refusal is a one-line error (exit 1)."""
    from bridge.reconcile import NotFound

    reconciler = await _reconciler(_settings())
    try:
        return await reconciler.update(Refinery, namespace, name, update, argument)
    except NotFound:
        _not_found(Refinery, name)


@refinery.command("enqueue")
@click.argument("name")
@click.argument("branches", metavar="BRANCH...", nargs=-1, required=True)
@click.option("--polecat", default=None, help="The polecat whose work it is (told the outcome); one BRANCH.")
@click.option("--bead", default=None, help="The bead it works on (named in the commit message); one BRANCH.")
@namespace_option
@_run
async def refinery_enqueue(
    name: str, branches: tuple[str, ...], polecat: str | None, bead: str | None, namespace: str
) -> None:
    """Queue BRANCHes, in order (or queue one again after fixing a conflict)."""
    if (polecat or bead) and len(branches) > 1:
        raise Refused("error: --polecat and --bead describe one branch; give one BRANCH with them")
    from workflows.refinery import EnqueueRequest

    requests = [
        EnqueueRequest(branch=branch, polecat=polecat, namespace=namespace if polecat else None, bead_id=bead)
        for branch in branches
    ]
    places = await _refinery_update(name, namespace, "enqueue", requests)
    for branch, place in zip(branches, places, strict=True):
        click.echo(f"{branch} queued on refinery {name} (position {place})")


@refinery.command("dequeue")
@click.argument("name")
@click.argument("branch")
@namespace_option
@_run
async def refinery_dequeue(name: str, branch: str, namespace: str) -> None:
    """Take BRANCH out of the queue."""
    await _refinery_update(name, namespace, "dequeue", branch)
    click.echo(f"{branch} dequeued from refinery {name}")


@refinery.command("approve")
@click.argument("name")
@click.argument("branch")
@namespace_option
@_run
async def refinery_approve(name: str, branch: str, namespace: str) -> None:
    """Approve BRANCH to land (autoMerge false): the `approve` signal, as the Temporal UI sends it."""
    reconciler = await _reconciler(_settings())
    found = await reconciler.find(Refinery, namespace, name)
    if not isinstance(found, Refinery):
        _not_found(Refinery, name)
    try:
        check_branch_name(branch)
    except ValueError as error:
        raise Refused(f"Refinery {namespace}/{name}: branch {branch!r}: {error}") from None
    queued = [entry.branch for entry in found.status.queue] if found.status else []
    await reconciler.signal(Refinery, namespace, name, "approve", branch)
    later = "" if branch in queued else " (not queued yet: it lands approved once it is)"
    click.echo(f"{branch} approved on refinery {name}{later}")


# --- CRDs ----------------------------------------------------------------------


@cli.group()
def crds() -> None:
    """CustomResourceDefinitions of the six kinds."""


@crds.command("generate")
@click.option("-d", "--directory", type=click.Path(path_type=Path), default=None, help="Where to write.")
def crds_generate(directory: Path | None) -> None:
    """Write the CRD YAML generated from the models (default: crds/generated/)."""
    from crds.generate import generate

    for path in generate(directory) if directory else generate():
        click.echo(f"wrote {path}")


def main() -> None:
    try:
        code = cli.main(prog_name="gastown", standalone_mode=False) or 0
    except click.exceptions.Abort:
        code = 130
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.exceptions.Exit as done:
        code = done.exit_code
    flush_traces()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native threads can abort a normal interpreter exit (sdk-python #300).
    os._exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
