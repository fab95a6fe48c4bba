"""Keeping histories bounded: when an entity workflow should continue as new."""

from __future__ import annotations

from temporalio import workflow

# Below the server's own suggestion (4,096 events by default) and far below
# its hard limit (51,200): an entity workflow starts a fresh run well before.
HISTORY_LIMIT = 4000
# Bytes: a convoy's status (one line per bead) makes large events; roll long before the 50 MB limit.
HISTORY_SIZE_LIMIT = 8 * 1024 * 1024


def history_full(limit: int) -> bool:
    """True when the current run should hand its state to a new run."""
    info = workflow.info()
    return (
        info.is_continue_as_new_suggested()
        or info.get_current_history_length() >= limit
        or info.get_current_history_size() >= HISTORY_SIZE_LIMIT
    )
