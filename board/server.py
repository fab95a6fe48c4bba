"""The town board's web server: pages, a live event stream, and the same actions as the CLI.

- `GET /`: the town. The page carries the town as JSON and renders it with a
  small script (no build step, nothing fetched from elsewhere); every later
  change is pushed on `GET /events` (server-sent events), never polled by the
  page. One reader of the town serves every open page: it reads visibility
  every `interval` seconds and sends each page only what changed (polecat
  cells by key, the small sections whole).
- `GET /polecats/{namespace}/{name}`: one polecat: its status, conditions,
  follow-ups, log tail and diff, and its Temporal UI link.
- `POST /api/...`: terminate, nudge, restart a polecat; approve a branch. They
  send the CLI's signals and updates, and a refusal comes back with the same
  words.

Safe by default: it binds 127.0.0.1; every action needs the board's token,
which a page is given only when it is asked for from this machine (from
elsewhere a person passes `?token=` once); user text reaches the page only
escaped (Jinja's autoescape) or as JSON set with `textContent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from board.logs import CannotRead, file_log, pod_log
from board.metrics import TownMetrics
from board.town import Town, read_town
from bridge.reconcile import NotFound, Reconciler
from client.connection import connect, metrics_runtime
from client.diffs import NoDiff, polecat_diff
from client.private_files import write_private
from client.settings import Settings
from contracts.attributes import workflow_id
from crds import InvalidResource, Polecat, Refinery, Rig

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
INTERVAL = 1.0  # seconds between two reads of the town
KEEPALIVE = 5.0  # seconds between two comments on a quiet event stream (how soon a closed page is seen)
LOG_LINES = 200


class Board:
    def __init__(
        self,
        reconciler: Reconciler,
        settings: Settings,
        token: str | None = None,
        interval: float = INTERVAL,
        metrics: TownMetrics | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.settings = settings
        self.token = token or secrets.token_urlsafe(18)
        self.interval = interval
        self.metrics = metrics  # the town's gauges, set at each read
        self.town: Town | None = None
        self.pages: set[asyncio.Queue[str]] = set()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.town_page)
        app.router.add_get("/events", self.events)
        app.router.add_get("/polecats/{namespace}/{name}", self.polecat_page)
        app.router.add_get("/events/polecats/{namespace}/{name}/log", self.log_events)
        app.router.add_post("/api/polecats/{namespace}/{name}/{action}", self.polecat_action)
        app.router.add_post("/api/refineries/{namespace}/{name}/approve", self.approve)
        app.router.add_static("/static", HERE / "static")
        app.cleanup_ctx.append(self._reading)
        return app

    # --- the town, read once for every page --------------------------------------

    async def _reading(self, app: web.Application) -> AsyncIterator[None]:
        reader = asyncio.create_task(self._read_forever())
        yield
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    async def _read_forever(self) -> None:
        while True:
            try:
                town = await read_town(self.reconciler)
            except Exception:  # Temporal away for a moment: the pages keep what they have
                log.exception("reading the town failed")
            else:
                change = _change(self.town, town)
                self.town = town
                if self.metrics is not None:
                    self.metrics.record(town)
                if change:
                    event = _event("change", change)
                    for page in self.pages:
                        page.put_nowait(event)
            await asyncio.sleep(self.interval)

    async def _current(self) -> Town:
        if self.town is None:
            self.town = await read_town(self.reconciler)
        return self.town

    # --- pages -------------------------------------------------------------------

    async def town_page(self, request: web.Request) -> web.Response:
        town = await self._current()
        return self._render("town.html", request, town=town.model_dump(mode="json"))

    async def polecat_page(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        polecat = await self.reconciler.find(Polecat, namespace, name)
        if polecat is None:
            raise web.HTTPNotFound(text=f"no polecat {namespace}/{name}")
        rig = await self.reconciler.find(Rig, None, polecat.spec.rig)
        try:
            diff = await asyncio.to_thread(polecat_diff, polecat, rig, self.settings.home) if rig else ""
        except NoDiff as error:
            diff = str(error)
        status = polecat.status
        log_tail, log_offset = "", 0
        if status and status.log_file and Path(status.log_file).exists():
            data = Path(status.log_file).read_bytes()
            log_tail, log_offset = (
                "\n".join(data.decode(errors="replace").splitlines()[-LOG_LINES:]),
                len(data),
            )
        link = self.settings.workflow_url(workflow_id("Polecat", namespace, name))
        return self._render(
            "polecat.html",
            request,
            polecat=polecat,
            status=status,
            diff=diff,
            log_tail=log_tail,
            log_offset=log_offset,
            ui_link=link,
        )

    def _render(self, template: str, request: web.Request, **values: Any) -> web.Response:
        token = self.token if _from_this_machine(request) else ""
        html = self.templates.get_template(template).render(token=token, **values)
        return web.Response(text=html, content_type="text/html", headers=SAFE_HEADERS)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """The page's live feed: the town first, then each change as it is seen."""
        response = await _event_stream(request)
        page: asyncio.Queue[str] = asyncio.Queue()
        self.pages.add(page)
        try:
            await response.write(_event("town", (await self._current()).model_dump(mode="json")).encode())
            while True:
                try:
                    event = await asyncio.wait_for(page.get(), KEEPALIVE)
                except TimeoutError:
                    event = ": still here\n\n"
                await response.write(event.encode())
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.pages.discard(page)
        return response

    async def log_events(self, request: web.Request) -> web.StreamResponse:
        """The polecat's output as it grows: its log file from `?from=` on, or its pod's log."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        polecat = await self.reconciler.find(Polecat, namespace, name)
        if polecat is None:
            raise web.HTTPNotFound(text=f"no polecat {namespace}/{name}")
        log_file = polecat.status.log_file if polecat.status else None
        if polecat.spec.execution_mode == "kubernetes":
            chunks = pod_log(self.settings, polecat, follow=True)
        elif log_file:
            chunks = file_log(Path(log_file), int(request.query.get("from", "0") or 0))
        else:
            raise web.HTTPNotFound(text=f"polecat {name} has no output yet")
        response = await _event_stream(request)
        quiet_since = time.monotonic()
        with contextlib.suppress(ConnectionResetError, CannotRead):  # the page went away; no pod log
            async for chunk in chunks:
                if chunk:
                    await response.write(_event("log", chunk.decode(errors="replace")).encode())
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > KEEPALIVE:  # a page gone away ends this here
                    await response.write(b": still here\n\n")
                    quiet_since = time.monotonic()
        return response

    # --- actions: the CLI's signals and updates -----------------------------------

    async def polecat_action(self, request: web.Request) -> web.Response:
        self._check_token(request)
        namespace, name, action = (request.match_info[key] for key in ("namespace", "name", "action"))
        body = await _json_body(request)
        try:
            if action == "terminate":
                await self.reconciler.signal(Polecat, namespace, name, "terminate")
                said = "terminating"
            elif action == "nudge":
                message = body.get("message", "")
                said = await self.reconciler.update(Polecat, namespace, name, "follow_up", message, "board")
            elif action == "restart":
                said = await self.reconciler.update(Polecat, namespace, name, "restart")
            else:
                raise web.HTTPNotFound(text=f"no action {action}")
        except NotFound:
            return _answer(404, f"no polecat {namespace}/{name}")
        except InvalidResource as error:
            return _answer(409, "; ".join(error.problems))
        return _answer(200, f"polecat {name}: {said}")

    async def approve(self, request: web.Request) -> web.Response:
        self._check_token(request)
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        branch = str((await _json_body(request)).get("branch", ""))
        try:
            await self.reconciler.signal(Refinery, namespace, name, "approve", branch)
        except NotFound:
            return _answer(404, f"no refinery {namespace}/{name}")
        return _answer(200, f"{branch} approved on refinery {name}")

    def _check_token(self, request: web.Request) -> None:
        given = request.headers.get("X-Board-Token", "")
        if not secrets.compare_digest(given, self.token):
            raise web.HTTPForbidden(text="this action needs the board's token (X-Board-Token)")


# No frames, no scripts but our own, no sniffing: user text in a page can do nothing.
SAFE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _from_this_machine(request: web.Request) -> bool:
    peer = request.remote or ""
    with contextlib.suppress(ValueError):
        return ip_address(peer).is_loopback
    return False


async def _json_body(request: web.Request) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        body = await request.json()
        if isinstance(body, dict):
            return body
    return {}


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


async def _event_stream(request: web.Request) -> web.StreamResponse:
    """A server-sent events answer, its headers sent."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    return response


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _change(before: Town | None, after: Town) -> dict[str, Any]:
    """What a page must change to show `after` instead of `before`: polecat cells by key, other
    sections whole; empty if nothing did."""
    if before is None:
        return {"town": after.model_dump(mode="json")}
    change: dict[str, Any] = {}
    old = {cell.key: cell for cell in before.polecats}
    new = {cell.key: cell for cell in after.polecats}
    upserts = [cell.model_dump(mode="json") for key, cell in new.items() if old.get(key) != cell]
    removed = [key for key in old if key not in new]
    if upserts or removed:
        change["polecats"] = {"upsert": upserts, "remove": removed}
    for section in ("rigs", "convoys", "queue", "alerts"):
        if getattr(before, section) != getattr(after, section):
            change[section] = [row.model_dump(mode="json") for row in getattr(after, section)]
    return change


async def serve_board(settings: Settings, host: str, port: int, token: str | None = None) -> None:
    """Serve the board until cancelled (Ctrl-C), saying where."""
    reconciler = Reconciler(await connect(settings), settings.task_queue)
    metrics = TownMetrics(metrics_runtime(settings.metrics).metric_meter) if settings.metrics else None
    board = Board(reconciler, settings, token, metrics=metrics)
    runner = web.AppRunner(board.app(), access_log=None, shutdown_timeout=2.0)  # pages' streams end
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        where = "GASTOWN_BOARD_TOKEN"
        if token is None:  # a secret: in a private file, never in the log
            settings.home.mkdir(parents=True, exist_ok=True)
            where = str(settings.home / "board.token")
            write_private(Path(where), board.token + "\n")
        print(f"town board on http://{shown}:{port}/ (from another machine: ?token= of {where})", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
