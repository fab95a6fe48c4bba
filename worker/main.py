"""The worker process: every workflow and activity of Gas Town on one task queue."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.git import GitActivities
from activities.tmux import TmuxActivities
from worker.client import connect
from worker.settings import Settings
from workflows.polecat import PolecatWorkflow
from workflows.rig import RigWorkflow

WORKFLOWS = [PolecatWorkflow, RigWorkflow]


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    """A worker with every workflow and activity, configured by `settings`."""
    settings.home.mkdir(parents=True, exist_ok=True)
    git = GitActivities(settings.home)
    tmux = TmuxActivities(settings.home, settings.tmux_socket)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            git.prepare_worktree,
            git.publish_branch,
            git.check_rig,
            tmux.start_agent,
            tmux.watch_agent,
            tmux.stop_agent,
        ],
        activity_executor=executor,
        max_concurrent_activities=10_000,  # watchers are async and cheap
    )


async def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then finish gracefully."""
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = build_worker(client, settings, executor)
        async with worker:
            logging.getLogger(__name__).info(
                "worker polling %s on %s (%s)",
                settings.task_queue,
                settings.temporal_address,
                settings.temporal_namespace,
            )
            await stop.wait()
