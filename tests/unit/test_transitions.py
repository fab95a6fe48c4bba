"""Polecat phases move only along the spec's diagram (plus the documented extensions)."""

from __future__ import annotations

from crds.polecat import TRANSITIONS

# The spec's diagram, edge by edge.
DIAGRAM = {
    ("Idle", "Working"),
    ("Working", "Succeeded"),
    ("Working", "Failed"),
    ("Succeeded", "Failed"),
    ("Idle", "Terminated"),
    ("Failed", "Terminated"),
}
# Ours, documented in the README: Pending before the first reconcile, and
# terminating a Working or Succeeded polecat directly.
EXTENSIONS = {
    ("Pending", "Idle"),
    ("Pending", "Working"),
    ("Pending", "Failed"),
    ("Idle", "Failed"),  # the work could not start: bead closed, worktree refused
    ("Pending", "Terminated"),
    ("Working", "Terminated"),
    ("Succeeded", "Terminated"),
    ("Failed", "Working"),  # a Witness's restart or a raised budget: a new attempt (status.restarts)
    ("Working", "Pending"),  # a long rate limit: the agent stopped until the reset (then Pending -> Working)
    (
        "Succeeded",
        "Working",
    ),  # a follow-up (nudge): the agent's session resumed with it (status.conversation)
}


def test_transitions_are_the_diagram_plus_documented_edges() -> None:
    """No edge exists beyond the diagram and the documented extensions; Terminated is final."""
    edges = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert edges == DIAGRAM | EXTENSIONS
    assert TRANSITIONS["Terminated"] == frozenset()
