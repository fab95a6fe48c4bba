"""The example manifests a user copies are valid, one of each kind."""

from __future__ import annotations

from cli.manifests import load
from tests.helpers import REPO_ROOT


def test_examples_are_valid_and_cover_every_kind() -> None:
    """Every file in examples/manifests/ parses, and together they show all six kinds."""
    resources = load([str(REPO_ROOT / "examples" / "manifests")], "default")
    assert {resource.INFO.kind for resource in resources} == {
        "Polecat", "Convoy", "Witness", "Refinery", "Rig", "BeadStore",
    }  # fmt: skip
