"""Ports on this machine: is one taken, by whom, and a free one.

`gastown up` asks before it starts a dev server, so that a home never
silently joins another home's runtime (the dev server would fail to bind,
and the client would then reach the other home's server on the same port).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path

import psutil

HOST = "127.0.0.1"


def taken(port: int) -> bool:
    """True when something already listens on HOST:port (our dev servers listen there)."""
    with socket.socket() as probe:
        # As a server binds: a port whose last connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def free_port() -> int:
    """A port nothing listens on now (the system's choice)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different ports nothing listens on now: all held open at once while chosen, so
    the system cannot hand out one twice."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def holder(port: int) -> str:
    """Who listens on `port`, as a user reads it: another home's dev server, a process, or unknown."""
    with contextlib.suppress(psutil.Error):
        for connection in psutil.net_connections(kind="tcp"):
            address = connection.laddr
            if connection.status != psutil.CONN_LISTEN or not address or not connection.pid:
                continue
            if address.port != port:
                continue
            process = psutil.Process(connection.pid)
            home = home_of_dev_server(process.cmdline())
            if home is not None:
                return f"the Gas Town runtime of GASTOWN_HOME={home} (Temporal dev server, pid {process.pid})"
            return f"process {process.pid} ({process.name()})"
    return "another process"


def home_of_dev_server(argv: list[str]) -> Path | None:
    """The home of an embedded dev server, from its command line (`--db-filename HOME/temporal.db`)."""
    if "start-dev" not in argv or "--db-filename" not in argv:
        return None
    position = argv.index("--db-filename") + 1
    return Path(argv[position]).parent if position < len(argv) else None
