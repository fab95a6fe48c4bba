"""What an activity's failure says: the reason (an error type a person can read) and the message."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError


def reason_of(error: ActivityError) -> str | None:
    """The ApplicationError type the activity raised (`TargetMoved`, `RigNotReady`, ...), if any."""
    cause = error.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def message_of(error: ActivityError) -> str:
    cause = error.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or error)
