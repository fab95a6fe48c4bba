"""A polecat's follow-ups (nudges): queued, delivered to its agent's next run, concluded with it.

A person sends one with `gastown nudge`, the `nudge` signal (the Temporal UI)
or the `polecat.gastown.gastown.io/nudge` annotation. It waits for the agent's next
run: the current one's end (a Working polecat), or a resumed session (a
Succeeded or Failed one: the workflow starts that run at once). The run takes
every follow-up waiting, and when it ends each gets its outcome.

`status.conversation` keeps the latest KEPT, each text cut to SHOWN
characters; older ones are counted in `status.earlierFollowUps`. The texts
waiting are kept whole in the workflow's state, at most MAX_WAITING.

Pure: the workflow calls these with its state and `workflow.now()`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from crds.polecat import FollowUp, FollowUpOutcome, FollowUpSource, FollowUpText, PolecatStatus

MAX_WAITING = 10
KEPT = 20
SHOWN = 200
_TEXT = TypeAdapter(FollowUpText)


class FollowUps(BaseModel):
    """What continue-as-new carries of the follow-ups: the texts waiting, the last annotation's digest."""

    waiting: list[str] = Field(default_factory=list)
    annotation: str | None = None


def checked(message: object) -> str:
    """The follow-up's text; ValueError saying the rule it breaks."""
    try:
        return _TEXT.validate_python(message)
    except ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise ValueError(f"message: {problem} (a follow-up is 1 to 4000 characters of text)") from None


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record(status: PolecatStatus, entry: FollowUp) -> None:
    """Into the conversation, the oldest beyond KEPT summarised as a count."""
    entry.message = entry.message[:SHOWN]
    status.conversation.append(entry)
    while len(status.conversation) > KEPT:
        status.conversation.pop(0)
        status.earlier_follow_ups += 1


def deliver(follow_ups: FollowUps, status: PolecatStatus) -> str | None:
    """The waiting texts, as one message for the run about to start (None: none waits)."""
    if not follow_ups.waiting:
        return None
    texts, follow_ups.waiting = follow_ups.waiting, []
    for entry in status.conversation:
        if entry.outcome == "Queued":
            entry.outcome = "Delivered"
    return texts[0] if len(texts) == 1 else "\n\n".join(f"{n}. {text}" for n, text in enumerate(texts, 1))


def conclude(follow_ups: FollowUps, status: PolecatStatus, phase: FollowUpOutcome, message: str) -> None:
    """The follow-ups of the run that ended in `phase` get it as their outcome; a terminated polecat's
    waiting ones are never delivered."""
    for entry in status.conversation:
        if entry.outcome == "Delivered" or (phase == "Terminated" and entry.outcome == "Queued"):
            entry.outcome = phase
            entry.detail = message[:SHOWN]
    if phase == "Terminated":
        follow_ups.waiting = []


def queued(
    follow_ups: FollowUps, status: PolecatStatus, text: str, source: FollowUpSource, now: datetime
) -> None:
    follow_ups.waiting.append(text)
    record(status, FollowUp(time=now, message=text, outcome="Queued", source=source))


def refused(status: PolecatStatus, message: object, why: str, source: FollowUpSource, now: datetime) -> None:
    text = message if isinstance(message, str) else repr(message)
    record(status, FollowUp(time=now, message=text, outcome="Refused", detail=why, source=source))
