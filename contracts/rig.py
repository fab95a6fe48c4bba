"""What the Rig workflow is asked by others that cannot import it: a name for a new polecat.

A convoy's spawn activity asks the rig for a polecat name with the
`allocate_name` update; the activity cannot import the workflow, so the
update's name and message live here, for both.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

ALLOCATE_NAME = "allocate_name"


class NameRequest(BaseModel):
    """A name for a polecat about to be created; the same holder always gets the same name back."""

    holder: str  # who asks, e.g. `convoy/<ns>/<name>#<bead>`; its name stays its own until released
    taken: list[str] = Field(default_factory=list)  # names found in use (a polecat made by hand)
