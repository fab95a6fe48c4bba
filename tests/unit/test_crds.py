"""The generated CRDs: in step with the models, and valid structural schemas."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from crds import KINDS
from crds.generate import GENERATED_DIR, crd_for, file_name, kustomization, render


@pytest.mark.parametrize("kind", list(KINDS))
def test_committed_crd_matches_models(kind: str) -> None:
    """The YAML in crds/generated/ is what the models generate (run `make crds` if not)."""
    model = KINDS[kind]
    committed = (GENERATED_DIR / file_name(model)).read_text()
    assert committed == render(model), (
        f"{file_name(model)} drifted from the models: run `gastown crds generate`"
    )


def _walk(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for value in node:
            found += _walk(value)
    return found


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural(kind: str) -> None:
    """No $ref, anyOf, titles or YAML anchors; every object node has a type."""
    crd = crd_for(KINDS[kind])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for node in _walk(schema):
        assert not {"$ref", "anyOf", "allOf", "title", "$defs"} & node.keys(), node
        if "properties" in node:
            assert node.get("type") == "object", node
            assert "additionalProperties" not in node, node
    assert "&id" not in render(KINDS[kind])


def test_scopes_names_and_columns() -> None:
    """Rig is cluster-scoped, the rest namespaced; all in category gastown with a status subresource."""
    for kind, model in KINDS.items():
        crd = yaml.safe_load(render(model))
        spec = crd["spec"]
        assert spec["scope"] == ("Cluster" if kind == "Rig" else "Namespaced")
        assert spec["names"]["categories"] == ["gastown"]
        assert spec["names"]["shortNames"]
        version = spec["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert version["additionalPrinterColumns"][-1]["name"] == "Age"
    polecat_columns = [
        c["name"] for c in crd_for(KINDS["Polecat"])["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert polecat_columns[:6] == ["Rig", "Desired", "Phase", "Bead", "Agent", "Mode"]


def test_schema_carries_enums_defaults_and_required() -> None:
    """Enums, defaults, bounds and required fields reach the OpenAPI schema."""
    schema = crd_for(KINDS["Polecat"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["rig", "desiredState"]
    assert spec["properties"]["desiredState"]["enum"] == ["Idle", "Working", "Terminated"]
    assert spec["properties"]["agent"]["default"] == "claude-code"
    temperature = spec["properties"]["agentConfig"]["properties"]["temperature"]
    assert (temperature["minimum"], temperature["maximum"]) == (0.0, 1.0)
    assert spec["properties"]["agentConfig"]["properties"]["maxTokens"]["minimum"] == 1
    assert spec["properties"]["rig"]["pattern"].startswith("^[a-z0-9]")
    witness = crd_for(KINDS["Witness"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert witness["properties"]["spec"]["properties"]["checkInterval"]["default"] == "30s"


@pytest.mark.parametrize("kind", list(KINDS))
def test_crd_is_valid_kubernetes(kind: str) -> None:
    """Each CRD passes strict validation against the Kubernetes 1.37 schema (kubernetes-validate, offline)."""
    assert kubernetes_validate.validate(yaml.safe_load(render(KINDS[kind])), "1.37.0", strict=True) == "1.37"


def test_committed_kustomization_matches() -> None:
    """crds/generated/kustomization.yaml lists every CRD (deploy/ uses it as a base)."""
    assert (GENERATED_DIR / "kustomization.yaml").read_text() == kustomization()
