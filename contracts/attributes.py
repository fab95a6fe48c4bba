"""Search attributes and memo keys: how the Temporal UI and `gastown get` find resources.

Registered with the dev server at start (`worker.embedded`) and on a cluster
by the deploy manifests; all are Keyword.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

KIND = SearchAttributeKey.for_keyword("GastownKind")
NAMESPACE = SearchAttributeKey.for_keyword("GastownNamespace")
RIG = SearchAttributeKey.for_keyword("GastownRig")
PHASE = SearchAttributeKey.for_keyword("GastownPhase")
BEAD = SearchAttributeKey.for_keyword("GastownBeadID")
HOST = SearchAttributeKey.for_keyword("GastownHost")  # a local polecat's, once its worktree is made

ALL = (KIND, NAMESPACE, RIG, PHASE, BEAD, HOST)

# Memo keys: the resource as a user sees it, readable without a worker.
MEMO_METADATA = "metadata"
MEMO_SPEC = "spec"
MEMO_STATUS = "status"
MEMO_BEAD_STORE = "beadStore"  # a Rig's: `<namespace>/<name>` of the BeadStore that holds it
MEMO_REFINERY = "refinery"  # a Rig's: `<namespace>/<name>` of the Refinery that serves it
MEMO_WITNESS = "witness"  # a Rig's: `<namespace>/<name>` of the Witness that watches it


def initial(
    kind: str, namespace: str, rig: str | None, bead: str | None, phase: str
) -> TypedSearchAttributes:
    pairs = [
        SearchAttributePair(KIND, kind),
        SearchAttributePair(NAMESPACE, namespace),
        SearchAttributePair(PHASE, phase),
    ]
    if rig:
        pairs.append(SearchAttributePair(RIG, rig))
    if bead:
        pairs.append(SearchAttributePair(BEAD, bead))
    return TypedSearchAttributes(pairs)


def workflow_id(kind: str, namespace: str | None, name: str) -> str:
    """`polecat/<namespace>/<name>`; cluster-scoped kinds: `rig/<name>`."""
    if namespace is None:
        return f"{kind.lower()}/{name}"
    return f"{kind.lower()}/{namespace}/{name}"
