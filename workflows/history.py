"""Keeping histories bounded: when and how an entity workflow continues as new."""

from __future__ import annotations

from typing import Any, NoReturn

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


def continue_as_new(next_input: Any) -> NoReturn:
    """Hand the state to a new run, the memo (what `gastown get` shows) with it.

    Left to the server, the new run would get the memo its first run started with: the status
    and spec upserted since would go back in time until the next change is published.
    """
    workflow.continue_as_new(next_input, memo=dict(workflow.memo()))
