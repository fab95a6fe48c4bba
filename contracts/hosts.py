"""Which machine local work runs on: every worker's host, and the task queue of its own.

A local polecat's worktree, tmux session and log live on one host. Each
worker polls the shared queue (workflows, and every activity that may run
anywhere) and a queue of its own host, `<task queue>@<host>`: Temporal's
worker-specific task queue pattern. A workflow sends a host's work to that
host's queue; with no worker of the host polling it, the work waits there
and nothing of it runs elsewhere.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity

from contracts.names import host_queue as host_queue  # named here too, where hosts are explained

HERE = "hosts.here"

# How long a host's work may wait in its queue before the workflow says the host has no worker.
# The work is then scheduled again: it waits for the host for as long as it takes.
HOST_WAIT = timedelta(seconds=30)


class HostActivities:
    @activity.defn(name=HERE)
    async def here(self) -> str:
        """The host of the worker that takes it: sent to a host's queue, it returns once that host is back."""
        raise NotImplementedError
