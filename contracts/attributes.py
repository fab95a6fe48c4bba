"""Search attributes and memo keys: how the Temporal UI and `gastown get` find resources.

Registered with the dev server at start (`worker.embedded`) and on a cluster
by the deploy manifests; all are Keyword.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from contracts import names
from contracts.names import (
    MEMO_BEAD_STORE,
    MEMO_METADATA,
    MEMO_REFINERY,
    MEMO_SPEC,
    MEMO_STATUS,
    MEMO_WITNESS,
    workflow_id,
)

KIND = SearchAttributeKey.for_keyword(names.KIND)
NAMESPACE = SearchAttributeKey.for_keyword(names.NAMESPACE)
RIG = SearchAttributeKey.for_keyword(names.RIG)
PHASE = SearchAttributeKey.for_keyword(names.PHASE)
BEAD = SearchAttributeKey.for_keyword(names.BEAD)
HOST = SearchAttributeKey.for_keyword(names.HOST)

ALL = (KIND, NAMESPACE, RIG, PHASE, BEAD, HOST)

__all__ = [
    "ALL",
    "BEAD",
    "HOST",
    "KIND",
    "MEMO_BEAD_STORE",
    "MEMO_METADATA",
    "MEMO_REFINERY",
    "MEMO_SPEC",
    "MEMO_STATUS",
    "MEMO_WITNESS",
    "NAMESPACE",
    "PHASE",
    "RIG",
    "initial",
    "workflow_id",
]


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
