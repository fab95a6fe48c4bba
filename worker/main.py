"""The worker process: every workflow and activity of Gas Town on one task queue."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.beads import BeadActivities
from activities.convoys import ConvoyActivities
from activities.git import GitActivities
from activities.health import HealthActivities
from activities.kube import KubeActivities, KubeConnection
from activities.merges import MergeActivities
from activities.notify import NotifyActivities
from activities.pods import PodActivities
from activities.schedules import ScheduleActivities
from activities.tmux import TmuxActivities
from activities.visibility import VisibilityActivities
from bridge.reconcile import LocalPolecats, Reconciler
from client.connection import connect_when_up
from client.settings import Settings
from launch.pod_entrypoint import ssh_environment
from workflows.beadstore import BeadStoreTickWorkflow, BeadStoreWorkflow
from workflows.convoy import ConvoyWorkflow
from workflows.polecat import PolecatWorkflow
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
]


def build_worker(client: Client, settings: Settings) -> Worker:
    """A worker with every workflow and activity, configured by `settings`."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities(client, settings),
        # Every activity is async (git work runs in threads of its own), and a
        # watcher per working polecat is cheap: allow many at once.
        max_concurrent_activities=10_000,
    )


def activities(client: Client, settings: Settings) -> list[Callable[..., Any]]:
    """Every activity, each implementing its declaration in `contracts/`."""
    settings.home.mkdir(parents=True, exist_ok=True)
    git = GitActivities(settings.home)
    merges = MergeActivities(settings.home)
    tmux = TmuxActivities(settings.home, settings.tmux_socket, settings.agents_bin)
    connection = KubeConnection(settings.kubeconfig)
    kube = KubeActivities(connection)
    pods = PodActivities(connection, settings.polecat_image)
    beads = BeadActivities()
    schedules = ScheduleActivities(client)
    visibility = VisibilityActivities(client)
    health = HealthActivities(client, settings.home, connection)
    notify = NotifyActivities(settings.home, connection, settings.smtp())
    # A convoy on a laptop creates its polecats as `gastown apply` would.
    convoys = ConvoyActivities(client, LocalPolecats(Reconciler(client, settings.task_queue)), connection)
    return [
        git.prepare_worktree,
        git.publish_branch,
        git.check_rig,
        tmux.start_agent,
        tmux.watch_agent,
        tmux.stop_agent,
        kube.publish_status,
        pods.start_pod,
        pods.watch_pod,
        pods.delete_pod,
        beads.sync,
        beads.find,
        schedules.ensure,
        schedules.delete,
        convoys.spawn,
        convoys.watch,
        convoys.remove,
        visibility.watch_polecat_count,
        visibility.watch_succeeded,
        merges.prepare,
        merges.check,
        merges.land,
        health.observe,
        health.recheck,
        notify.slack,
        notify.email,
    ]


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
            "worker polling %s on %s (%s)",
            settings.task_queue,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        await stop.wait()
