"""Agents in tmux: start one in a polecat's worktree, watch it, stop it.

Every command goes to tmux as an argv list on the worker's private socket (one
tmux server per GASTOWN_HOME). The pane runs `launch/pane.py`, which gives
the agent the worker's environment of the moment (never the tmux server's)
and execs it; its argv is always several words, because tmux hands a
*single* word to `sh -c`: user text must never reach a shell.

The session outlives the worker (tmux daemonises), which is what makes a
polecat durable: a restarted worker adopts the session it finds by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import psutil
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeats import heartbeating
from activities.metrics import started_counter
from activities.panes import PANE_FORMAT, Pane, PaneCensus, parse_pane
from client.private_files import write_private
from contracts import tmux as contract
from contracts.tmux import AgentExit, AgentLaunch, AgentSession, RateLimit
from crds.common import short_uid
from crds.polecat import Polecat
from crds.usage import Usage
from launch.agents import Session, agent_command, agent_environment, prompt_for
from launch.gateway import (
    GatewayAccess,
    agent_directory,
    agent_environ,
    gateway_base,
    mint,
    pending_limit,
)
from launch.usage import AGENT_LEDGER, Prices, usage_counter, write_budget

# How long the watcher waits on the agent's pidfd between heartbeats.
WATCH_SLICE_SECONDS = 3.0
# How old the census of the tmux server's sessions that watchers share may be (`PaneCensus`).
CENSUS_SECONDS = 3.0
# How long an exited agent may take to be reaped by tmux before the watcher
# looks again (a pane can outlive its process while children hold the pty).
REAP_SECONDS = 5.0
TAIL_LINES = 20
TAIL_CHARS = 2000
STOP_GRACE_SECONDS = 2.0
_STARTED = "@gastown-started"
# The pane's first process, which takes the agent's environment from ENV_FILE and execs the agent.
LAUNCHER = Path(__file__).parents[1] / "launch" / "pane.py"  # run by path, never imported
ENV_FILE = "environment.json"
# Terminal escapes and carriage returns, taken out of an agent's output before it is shown.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]|\r")


def session_name(polecat: Polecat) -> str:
    """Unique per incarnation (uid) and deterministic, so a retry adopts it."""
    return f"gt-{polecat.namespace}-{polecat.name}-{short_uid(polecat.metadata.uid)}"


def tail_of(log_file: Path) -> str:
    """The last lines of an agent's output, escape codes removed, bounded."""
    try:
        with log_file.open("rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - 64 * 1024))
            text = stream.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    lines = [line.rstrip() for line in ANSI.sub("", text).splitlines()]
    tail = "\n".join(line for line in lines if line)
    tail = "\n".join(tail.splitlines()[-TAIL_LINES:])
    return tail[-TAIL_CHARS:]


def conversation_of(polecat: Polecat, resume: bool, environ: Mapping[str, str]) -> Session:
    """The polecat's agent conversation: one id per incarnation (uid), saved once claude-code has
    written it under its config directory (CLAUDE_CONFIG_DIR, or ~/.claude)."""
    identity = str(uuid.uuid5(uuid.NAMESPACE_URL, f"gastown:{polecat.metadata.uid or polecat.name}"))
    config = Path(environ.get("CLAUDE_CONFIG_DIR") or Path(environ.get("HOME", "~")).expanduser() / ".claude")
    saved = any((config / "projects").glob(f"*/{identity}.jsonl"))
    return Session(id=identity, resume=resume, saved=saved)


def agent_dir_of(session: AgentSession) -> Path:
    """The agent's directory: beside its log, of the same name (`TmuxActivities._paths`)."""
    return Path(session.log_file).with_suffix(".agent")


class TmuxActivities(contract.TmuxActivities):
    """Side effects on the worker's tmux server (socket `socket`).

    With a `gateway`, an agent's model traffic goes through it (`launch.gateway`): the agent gets
    the gateway's URLs and a token in place of the providers' keys.
    """

    def __init__(
        self,
        home: Path,
        socket: str,
        agents_bin: Path | None = None,
        gateway: GatewayAccess | None = None,
        prices: Prices | None = None,
    ) -> None:
        self.home = home
        self.socket = socket
        self.agents_bin = agents_bin
        self.gateway = gateway
        self.prices = prices or Prices()
        self.census = PaneCensus(
            lambda form: self._tmux("list-panes", "-a", "-F", form, check=False), CENSUS_SECONDS
        )

    async def _tmux(self, *args: str, check: bool = True) -> str:
        process = await asyncio.create_subprocess_exec(
            "tmux",
            "-L",
            self.socket,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if check and process.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {err.decode().strip()}")
        return out.decode()

    async def _pane(self, session: str) -> Pane | None:
        """The state of the session's pane; None if there is no such session."""
        return parse_pane(
            await self._tmux("list-panes", "-t", f"={session}:", "-F", PANE_FORMAT, check=False)
        )

    async def _lost(self, session: str) -> bool:
        """Whether the session is gone: missing from the census, and from tmux when asked alone (a
        census may predate the session)."""
        return not await self.census.has(session) and await self._pane(session) is None

    def _paths(self, polecat: Polecat) -> tuple[Path, Path, Path]:
        """The agent's log, its prompt, and its directory (the files its command line names)."""
        stem = session_name(polecat)
        agent_dir = agent_directory(self.home, f"{polecat.namespace}/{stem}")
        agent_dir.parent.mkdir(parents=True, exist_ok=True)
        return agent_dir.with_suffix(".log"), agent_dir.with_suffix(".prompt.md"), agent_dir

    @activity.defn(name=contract.START_AGENT)
    @heartbeating
    async def start_agent(self, launch: AgentLaunch) -> AgentSession:
        polecat = launch.polecat
        session = session_name(polecat)
        log_file, prompt_file, agent_dir = self._paths(polecat)
        spec = polecat.spec
        prompt = prompt_for(
            polecat.name, spec.rig, launch.branch, spec, launch.bead, launch.resume, launch.follow_up
        )
        environ = self._environ(f"{polecat.namespace}/{session}")
        conversation = conversation_of(polecat, launch.resume, environ)
        command = agent_command(spec, prompt, environ, str(agent_dir), conversation)
        started = await self._tmux("show-options", "-v", "-t", f"={session}:", _STARTED, check=False)
        if started.strip() == "1":
            activity.logger.info("adopting running agent session %s", session)
            return AgentSession(session=session, log_file=str(log_file), warnings=command.warnings)
        prompt_file.write_text(prompt)
        agent_dir.mkdir(mode=0o700, exist_ok=True)
        for name, content in command.files.items():
            (agent_dir / name).write_text(content)
        # The agent's whole environment: the worker's own (HOME, PATH, endpoints, keys or the
        # gateway's placeholders) as it is now, whatever the tmux server captured when it started,
        # plus what this agent needs.
        env = {
            **environ,
            **agent_environment(polecat.name, launch.branch, polecat.spec),
            "GT_PROMPT_FILE": str(prompt_file),
            "GT_USAGE_FILE": str(agent_dir / AGENT_LEDGER),
            "PWD": launch.worktree,  # opencode works in $PWD, not in its working directory
            **command.env,
            # A key the agent reads under another name than the worker's.
            **{
                variable: environ[source]
                for variable, source in command.keys.items()
                if variable != source and source in environ
            },
        }
        env_file = agent_dir / ENV_FILE
        write_private(env_file, json.dumps(env))
        exists = await self._pane(session) is not None
        # One tmux invocation: the session waits on a placeholder until
        # remain-on-exit and the log pipe are in place, so not one byte of
        # output and not the exit status can be missed.
        setup = [] if exists else ["new-session", "-d", "-s", session, "sleep", "2147483647", ";"]
        try:
            await self._tmux(
                *setup,
                "set-option", "-t", f"={session}:", "remain-on-exit", "on", ";",
                "pipe-pane", "-t", f"={session}:", f"exec cat >> {shlex.quote(str(log_file))}", ";",
                "respawn-pane", "-k", "-t", f"={session}:", "-c", launch.worktree,
                sys.executable, "-I", str(LAUNCHER), str(env_file), *self._resolved(command.argv), ";",
                "set-option", "-t", f"={session}:", _STARTED, "1",
            )  # fmt: skip
        except BaseException:
            env_file.unlink(missing_ok=True)  # the launcher never ran to delete it: keys stay nowhere
            raise
        activity.logger.info("started %s agent in session %s", polecat.spec.agent, session)
        started_counter().add(1, {"rig": spec.rig, "agent": spec.agent, "mode": "local"})
        return AgentSession(session=session, log_file=str(log_file), warnings=command.warnings)

    def _environ(self, agent_key: str) -> dict[str, str]:
        """The worker's environment as the agent sees it: through the gateway, when there is one."""
        if self.gateway is None:
            return dict(os.environ)
        token = mint(self.gateway.secret, agent_key)
        return agent_environ(os.environ, gateway_base(self.gateway.url, token))

    def _resolved(self, argv: list[str]) -> list[str]:
        """The agent's argv, its program taken from the project's agent CLIs when they have it
        (ahead of any on the worker's PATH, which the agent keeps as it is)."""
        installed = self.agents_bin / argv[0] if self.agents_bin and "/" not in argv[0] else None
        return [str(installed), *argv[1:]] if installed and installed.exists() else argv

    @activity.defn(name=contract.WATCH_AGENT)
    async def watch_agent(self, session: AgentSession) -> AgentExit:
        """Wait, heartbeating, until the agent's process exits; its status and output tail.

        The agent's process is watched through a pidfd, which becomes readable
        the instant it exits: no polling loop, no process spawned per check. Each
        heartbeat carries what the agent has spent so far (`gastown get` reads it
        from the pending activity: no history event per update).
        """
        agent_dir = agent_dir_of(session)
        counter = usage_counter(agent_dir, self.prices)
        write_budget(agent_dir, session.budget)  # the gateway refuses requests beyond it

        def limited() -> RateLimit | None:
            """A limit too long for the gateway to hold that the agent has met (and not waited out)."""
            limit = pending_limit(agent_dir, time.time())
            if limit is None:
                return None
            until = datetime.fromtimestamp(limit.until, UTC)
            return RateLimit(provider=limit.provider, until=until, status=limit.status)

        def beat() -> AgentExit | None:
            """Beat with the usage so far; why the agent must stop: its budget spent, or a long limit."""
            usage = counter.usage()
            activity.heartbeat(usage.to_wire() if usage else None)
            over_budget = session.budget.exceeded(usage) if session.budget else None
            rate_limited = limited()
            if over_budget is None and rate_limited is None:
                return None
            tail = tail_of(Path(session.log_file))
            return AgentExit(exit_code=None, tail=tail, over_budget=over_budget, rate_limited=rate_limited)

        def ended(exit_code: int) -> AgentExit:
            """How it exited; a failure after a long limit is the limit's (it gave up on it first)."""
            rate_limited = limited() if exit_code != 0 else None
            return AgentExit(
                exit_code=exit_code, tail=tail_of(Path(session.log_file)), rate_limited=rate_limited
            )

        while True:
            pane = await self._pane(session.session)
            if pane is None:
                raise _session_lost(session)
            if pane.exit_code is not None:
                return ended(pane.exit_code)
            try:
                pidfd = os.pidfd_open(pane.pid)
            except ProcessLookupError:
                pidfd = None  # already gone: fall through to reaping
            try:
                # The pidfd says when the agent exits; between beats the census says the session is there.
                while pidfd is not None and not await _readable(pidfd, WATCH_SLICE_SECONDS):
                    if await self._lost(session.session):
                        raise _session_lost(session)
                    stop = beat()
                    if stop is not None:
                        return stop
            finally:
                if pidfd is not None:
                    os.close(pidfd)
            exit_code = await self._reaped_status(session.session, pane.server_pid)
            if exit_code is not None:
                return ended(exit_code)
            stop = beat()  # not reaped yet
            if stop is not None:
                return stop

    async def _reaped_status(self, session: str, server_pid: int) -> int | None:
        """The exit status tmux records for an exited agent, once tmux has reaped it.

        Debian's tmux (built with libutempter) can miss the SIGCHLD of a pane's
        process and then never reap it; the remedy its maintainer gives is to
        send it one (tmux issues 311, 2679), so we do, until it has.
        """
        deadline = asyncio.get_running_loop().time() + REAP_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            pane = await self._pane(session)
            if pane is None or pane.exit_code is not None:
                return None if pane is None else pane.exit_code
            _nudge(server_pid)
            await asyncio.sleep(0.01)
        return None

    @activity.defn(name=contract.STOP_AGENT)
    async def stop_agent(self, session: AgentSession) -> Usage | None:
        pane = await self._pane(session.session)
        if pane is not None:
            if not pane.dead:
                await asyncio.to_thread(terminate_tree, pane.pid)
            await self._tmux("kill-session", "-t", f"={session.session}:", check=False)
        return usage_counter(agent_dir_of(session), self.prices).usage()


async def _readable(fd: int, timeout: float) -> bool:
    """True once `fd` is readable (a pidfd: its process exited), False after `timeout`."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[bool] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(True)

    loop.add_reader(fd, on_readable)
    try:
        return await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def _session_lost(session: AgentSession) -> ApplicationError:
    return ApplicationError(
        f"tmux session {session.session} disappeared while the agent ran",
        type="SessionLost",
        non_retryable=True,
    )


def _nudge(server_pid: int) -> None:
    """Make a tmux server reap its exited children."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(server_pid, signal.SIGCHLD)


def terminate_tree(pid: int) -> None:
    """SIGTERM the process, its descendants and its process group; SIGKILL what is left."""
    processes: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)  # tmux makes the pane's process a group leader
    _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE_SECONDS)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=STOP_GRACE_SECONDS)
