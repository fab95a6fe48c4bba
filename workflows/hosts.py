"""Work on one host's files, sent to that host's queue (`contracts.hosts`), and what a workflow
says while no worker of the host takes it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypedDict

from temporalio import exceptions, workflow
from temporalio.exceptions import ActivityError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from contracts.hosts import HOST_WAIT, host_queue

# A host's work is scheduled again after each wait, each wait twice the last, up to this: a host
# gone for hours costs a few history events an hour.
LONGEST_WAIT = timedelta(minutes=10)


class HostOptions(TypedDict, total=False):
    """What `workflow.execute_activity` takes to send an activity to a host."""

    task_queue: str
    schedule_to_start_timeout: timedelta


def on_host(host: str | None, waits: int = 0) -> HostOptions:
    """The options of an activity on `host`'s files, its `waits`-th try; None: any worker's files."""
    if host is None:
        return {}
    return {
        "task_queue": host_queue(workflow.info().task_queue, host),
        "schedule_to_start_timeout": wait_of(waits),
    }


def wait_of(waits: int) -> timedelta:
    """How long the `waits`-th try waits for the host's worker."""
    return min(HOST_WAIT * (1 << min(waits, 10)), LONGEST_WAIT)


def not_taken(error: ActivityError) -> bool:
    """No worker took the activity from its host's queue in time: the host has none."""
    cause = error.cause
    return isinstance(cause, exceptions.TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


def no_worker(host: str | None, work: str) -> str:
    """How a status says one try of `work` found no worker of its host."""
    return f"host {host} has no worker: none took {work}"


def host_gone(host: str, since: datetime, now: datetime) -> str:
    """How a status says it: the host, and how long its work has waited."""
    waited = int((now - since).total_seconds())
    minutes, seconds = divmod(waited, 60)
    return (
        f"waiting for host {host}: no worker of it has taken work since {since:%Y-%m-%d %H:%M:%S} UTC "
        f"({minutes}m{seconds:02d}s); nothing of it runs on another host"
    )
