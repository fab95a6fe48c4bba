"""The names Temporal knows our workflows by: workflow ids, search attribute names and memo keys.

Plain strings, with no SDK behind them: a reader that must start fast (the CLI's reads through
Temporal's HTTP API, `client.http_api`) uses them without importing temporalio.
`contracts.attributes` makes the SDK's typed keys of the same names.
"""

from __future__ import annotations

KIND = "GastownKind"
NAMESPACE = "GastownNamespace"
RIG = "GastownRig"
PHASE = "GastownPhase"
BEAD = "GastownBeadID"
HOST = "GastownHost"  # a local polecat's, once its worktree is made

# Memo keys: the resource as a user sees it, readable without a worker.
MEMO_METADATA = "metadata"
MEMO_SPEC = "spec"
MEMO_STATUS = "status"
MEMO_BEAD_STORE = "beadStore"  # a Rig's: `<namespace>/<name>` of the BeadStore that holds it
MEMO_REFINERY = "refinery"  # a Rig's: `<namespace>/<name>` of the Refinery that serves it
MEMO_WITNESS = "witness"  # a Rig's: `<namespace>/<name>` of the Witness that watches it


def workflow_id(kind: str, namespace: str | None, name: str) -> str:
    """`polecat/<namespace>/<name>`; cluster-scoped kinds: `rig/<name>`."""
    if namespace is None:
        return f"{kind.lower()}/{name}"
    return f"{kind.lower()}/{namespace}/{name}"


def host_queue(task_queue: str, host: str) -> str:
    """The queue only `host`'s workers poll."""
    return f"{task_queue}@{host}"


# The activities that watch an agent while it runs: their heartbeats carry what it has spent so far.
WATCH_AGENT = "tmux.watch_agent"
WATCH_POD = "pods.watch_pod"
