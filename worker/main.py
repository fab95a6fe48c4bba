"""The worker process: every workflow and activity of Gas Town, on the shared task queue and on
the queue of this worker's host (`contracts.hosts`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.beads import BeadActivities
from activities.convoys import ConvoyActivities
from activities.git import GitActivities
from activities.health import HealthActivities
from activities.hosts import HostActivities
from activities.kube import KubeActivities, KubeConnection
from activities.merges import MergeActivities
from activities.notify import NotifyActivities
from activities.pods import PodActivities
from activities.providers import ProviderActivities
from activities.schedules import ScheduleActivities
from activities.tmux import TmuxActivities
from activities.visibility import VisibilityActivities
from bridge.reconcile import LocalPolecats, Reconciler
from client.connection import connect_when_up, metrics_runtime
from client.settings import Settings
from launch.gateway import GatewayAccess
from launch.pod_entrypoint import ssh_environment
from launch.usage import Prices
from worker.gateway import serve_gateway
from worker.metrics import UsageMetrics
from workflows.beadstore import BeadStoreTickWorkflow, BeadStoreWorkflow
from workflows.convoy import ConvoyWorkflow
from workflows.polecat import PolecatWorkflow
from workflows.provider import ProviderWorkflow
from workflows.refinery import RefineryWorkflow
from workflows.rig import RigWorkflow
from workflows.witness import WitnessTickWorkflow, WitnessWorkflow

WORKFLOWS = [
    PolecatWorkflow,
    RigWorkflow,
    BeadStoreWorkflow,
    BeadStoreTickWorkflow,
    ConvoyWorkflow,
    RefineryWorkflow,
    WitnessWorkflow,
    WitnessTickWorkflow,
    ProviderWorkflow,
]


Activity = Callable[..., Any]


@dataclass
class Activities:
    """Every activity, each implementing its declaration in `contracts/`, by where it may run."""

    anywhere: list[Activity]
    # What reads or writes this host's files and tmux server: also on this host's own queue.
    on_host: list[Activity]

    @property
    def all(self) -> list[Activity]:
        return [*self.anywhere, *self.on_host]


@contextlib.asynccontextmanager
async def build_worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    """This host's worker, polling while the context lasts: two Temporal workers, one per queue.

    The shared queue carries the workflows and every activity, so that work sent before hosts
    had queues (or of a rig no host serves yet) still runs; this host's queue carries only the
    activities of its own files. The home's model gateway is served beside them.
    """
    prices = Prices.load(settings.prices)
    async with contextlib.AsyncExitStack() as stack:
        gateway = None
        if settings.gateway:
            gateway = await stack.enter_async_context(
                serve_gateway(
                    settings.home,
                    os.environ,
                    settings.gateway_port,
                    prices,
                    settings.rate_limit_hold,
                    UsageMetrics(metrics_runtime(settings.metrics).metric_meter)
                    if settings.metrics
                    else None,
                )
            )
        found = activities(client, settings, gateway, prices)
        await stack.enter_async_context(_workers(client, settings, found))
        yield


@contextlib.asynccontextmanager
async def _workers(client: Client, settings: Settings, found: Activities) -> AsyncIterator[None]:
    # The identity histories show for each activity: which host ran it.
    options: dict[str, Any] = {"identity": f"{os.getpid()}@{settings.host}"}
    # Every activity is async (git work runs in threads of its own), and a watcher per working
    # polecat is cheap: allow many at once.
    options["max_concurrent_activities"] = 10_000
    shared = Worker(
        client, task_queue=settings.task_queue, workflows=WORKFLOWS, activities=found.all, **options
    )
    own = Worker(client, task_queue=settings.host_queue, activities=found.on_host, **options)
    async with shared, own:
        yield


def activities(
    client: Client, settings: Settings, gateway: GatewayAccess | None = None, prices: Prices | None = None
) -> Activities:
    """Every activity, each implementing its declaration in `contracts/`."""
    settings.home.mkdir(parents=True, exist_ok=True)
    git = GitActivities(settings.home, settings.host)
    merges = MergeActivities(settings.home)
    tmux = TmuxActivities(settings.home, settings.tmux_socket, settings.agents_bin, gateway, prices)
    connection = KubeConnection(settings.kubeconfig)
    kube = KubeActivities(connection)
    pods = PodActivities(connection, settings.polecat_image, prices, settings.rate_limit_hold)
    beads = BeadActivities()
    schedules = ScheduleActivities(client)
    providers = ProviderActivities(client, settings.task_queue, settings.provider_limits)
    visibility = VisibilityActivities(client)
    health = HealthActivities(client, settings.home, connection)
    notify = NotifyActivities(settings.home, connection, settings.smtp())
    # A convoy on a laptop creates its polecats as `gastown apply` would.
    convoys = ConvoyActivities(client, LocalPolecats(Reconciler(client, settings.task_queue)), connection)
    anywhere: list[Activity] = [
        kube.publish_status,
        pods.start_pod,
        pods.watch_pod,
        pods.delete_pod,
        schedules.ensure,
        schedules.delete,
        providers.admit,
        providers.reclaim,
        convoys.spawn,
        convoys.watch,
        convoys.remove,
        visibility.watch_polecat_count,
        visibility.watch_succeeded,
        merges.prepare,
        merges.check,
        merges.land,
        health.recheck,
        notify.slack,
        notify.email,
    ]
    on_host: list[Activity] = [
        git.prepare_worktree,
        git.publish_branch,
        git.check_rig,
        tmux.start_agent,
        tmux.watch_agent,
        tmux.stop_agent,
        beads.sync,
        beads.find,
        health.observe,
        HostActivities(settings.host).here,
    ]
    return Activities(anywhere=anywhere, on_host=on_host)


async def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then finish gracefully."""
    os.environ.update(ssh_environment(settings.git_secret))  # for the git the refinery runs
    client = await connect_when_up(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with build_worker(client, settings):
        logging.getLogger(__name__).info(
            "worker of host %s polling %s and %s on %s (%s)",
            settings.host,
            settings.task_queue,
            settings.host_queue,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        await stop.wait()
