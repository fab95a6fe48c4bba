"""What the Rig workflow is asked by others: a name for a new polecat, and its one BeadStore,
Refinery and Witness.

A convoy's spawn activity asks for names (it cannot import the workflow), and
the reconcile core claims the rig for a BeadStore, Refinery or Witness: the
updates' and signals' names and messages live here, for both sides.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

from pydantic import AliasChoices, BaseModel, Field

from contracts import attributes

ALLOCATE_NAME = "allocate_name"
CLAIM = "claim"
RELEASE = "release"

HolderKind = Literal["BeadStore", "Refinery", "Witness"]


def is_holder_kind(kind: str) -> TypeGuard[HolderKind]:
    """A kind a rig has one of (BeadStore, Refinery, Witness)."""
    return kind in get_args(HolderKind)


# The kinds a rig has one of, and the memo key under which the rig names the one it has.
HOLDER_MEMO: dict[HolderKind, str] = {
    "BeadStore": attributes.MEMO_BEAD_STORE,
    "Refinery": attributes.MEMO_REFINERY,
    "Witness": attributes.MEMO_WITNESS,
}


class NameRequest(BaseModel):
    """A name for a polecat about to be created; the same holder always gets the same name back."""

    holder: str  # who asks, e.g. `convoy/<ns>/<name>#<bead>`; its name stays its own until released
    taken: list[str] = Field(default_factory=list)  # names found in use (a polecat made by hand)


class RigClaim(BaseModel):
    """A BeadStore, Refinery or Witness about to serve the rig, which has one of each.

    `replaces` names an earlier holder that no longer exists.
    """

    kind: HolderKind | None = None  # None in claims of earlier versions, whose update named the kind
    # `<namespace>/<name>`; histories from before the Refinery call it "store".
    holder: str = Field(validation_alias=AliasChoices("holder", "store"))
    replaces: str | None = None


class RigRelease(BaseModel):
    """A BeadStore, Refinery or Witness that ends: the rig no longer has it."""

    kind: HolderKind
    holder: str
