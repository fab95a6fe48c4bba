"""Visibility queries of our workflows: the one place they are written.

Plain strings over `contracts.names`, with no SDK behind them: the SDK's client and the CLI's
reads through Temporal's HTTP API (`client.http_api`) send the same queries.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts import names


def running(
    kind: str, *, namespace: str | None = None, rig: str | None = None, phases: Sequence[str] = ()
) -> str:
    """The visibility query of the running workflows of `kind`, narrowed by namespace, rig and phases.

    The one place queries are written: each value quoted (and refused if it holds a quote).
    """
    terms = [f"{names.KIND} = {_quoted(kind)}", "ExecutionStatus = 'Running'"]
    if namespace is not None:
        terms.append(f"{names.NAMESPACE} = {_quoted(namespace)}")
    if rig is not None:
        terms.append(f"{names.RIG} = {_quoted(rig)}")
    if phases:
        terms.append(f"{names.PHASE} IN ({', '.join(_quoted(phase) for phase in phases)})")
    return " AND ".join(terms)


def running_id(workflow_id: str) -> str:
    """The visibility query of the running workflow `workflow_id` (none, or one)."""
    return f"WorkflowId = {_quoted(workflow_id)} AND ExecutionStatus = 'Running'"


def rig_polecats(rig: str, *phases: str) -> str:
    """The visibility query of a rig's running polecats (in one of `phases`, if any are given)."""
    return running("Polecat", rig=rig, phases=phases)


def _quoted(value: str) -> str:
    if "'" in value:  # names are DNS names and phases are words: a quote is a bug upstream
        raise ValueError(f"no quote may be in a visibility query value: {value!r}")
    return f"'{value}'"
