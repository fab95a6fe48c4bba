"""How often long activities beat, and how soon a workflow retries one whose worker died.

Both sides read these: activities beat every `EVERY` seconds
(`activities.heartbeats.heartbeating`), and workflows give them a heartbeat
timeout of `TIMEOUT` and watchers the retry policy `watch_retry`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

EVERY = 2.0  # seconds between beats
# The heartbeat timeout workflows give these activities: retried this soon after a worker dies.
TIMEOUT = timedelta(seconds=10)
# Watchers (activities that poll, for minutes, until something changes) retry at least this often.
# Each worker crash fails the attempt in flight, and Temporal's default backoff (doubling up to
# 100 s) left a watcher idle for over a minute after a few crashes (seen by tests/faults/).
WATCH_RETRY_INTERVAL = timedelta(seconds=5)


def watch_retry(*non_retryable: str) -> RetryPolicy:
    """The retry policy of a watcher: no attempt limit, never more than WATCH_RETRY_INTERVAL apart."""
    return RetryPolicy(maximum_interval=WATCH_RETRY_INTERVAL, non_retryable_error_types=list(non_retryable))
