"""The six kinds by name, and turning manifests into typed resources."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from crds.beadstore import BeadStore
from crds.common import API_VERSION, Resource
from crds.convoy import Convoy
from crds.errors import InvalidResource, describe_errors
from crds.polecat import Polecat
from crds.refinery import Refinery
from crds.rig import Rig
from crds.witness import Witness

KINDS: dict[str, type[Resource]] = {
    model.INFO.kind: model for model in (Polecat, Convoy, Witness, Refinery, Rig, BeadStore)
}


def kind_for(word: str) -> type[Resource]:
    """The kind a user means by `polecat`, `polecats`, `pc`, `Polecat`, ..."""
    lowered = word.lower()
    for model in KINDS.values():
        if lowered in model.INFO.names():
            return model
    known = ", ".join(sorted(model.INFO.plural for model in KINDS.values()))
    raise KeyError(f"unknown kind {word!r}; known kinds: {known}")


def _kind_of(manifest: dict[str, Any]) -> type[Resource] | None:
    kind = manifest.get("kind")
    return KINDS.get(kind) if isinstance(kind, str) else None


def _ref_of(manifest: dict[str, Any]) -> str:
    """How a problem names the resource, whatever its kind and metadata hold."""
    kind = manifest.get("kind") or "(no kind)"
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    name = metadata.get("name") or "(no name)"
    model = _kind_of(manifest)
    if model is not None and not model.INFO.namespaced:
        return f"{kind} {name}"
    return f"{kind} {metadata.get('namespace') or 'default'}/{name}"


def parse_resource(manifest: Any, default_namespace: str = "default") -> Resource:
    """A typed resource from a manifest, or InvalidResource naming every problem."""
    if not isinstance(manifest, dict):
        raise InvalidResource("(document)", ["must be a mapping with apiVersion, kind, metadata, spec"])
    ref = _ref_of(manifest)
    if manifest.get("apiVersion") != API_VERSION:
        raise InvalidResource(
            ref, [f"apiVersion: must be {API_VERSION} (got {manifest.get('apiVersion')!r})"]
        )
    model = _kind_of(manifest)
    if model is None:
        raise InvalidResource(ref, [f"kind: must be one of {', '.join(KINDS)}"])
    try:
        resource = model.model_validate(manifest)
    except ValidationError as error:
        raise InvalidResource(ref, describe_errors(error)) from None
    if model.INFO.namespaced and resource.metadata.namespace is None:
        resource.metadata.namespace = default_namespace
    if not model.INFO.namespaced and resource.metadata.namespace is not None:
        raise InvalidResource(ref, ["metadata.namespace: must be empty, the kind is cluster-scoped"])
    return resource
