"""CustomResourceDefinitions generated from the models.

Pydantic writes JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI
v3.0 schema: no `$ref`, no `anyOf` with null, no titles, `properties` never
beside `additionalProperties: false` (the API server prunes unknown fields
instead). `structural` performs exactly that translation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from crds.common import GROUP, VERSION, Resource
from crds.registry import KINDS

GENERATED_DIR = Path(__file__).parent / "generated"


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node as a structural OpenAPI v3.0 node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {schema}")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return structural({**options[0], **rest}, defs)
    node: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "$defs"):
            continue
        if key == "default" and value is None:
            continue
        if key == "additionalProperties" and isinstance(value, bool):
            continue
        if key == "const":
            node["enum"] = [value]
        elif key == "exclusiveMinimum":
            node["minimum"] = value + 1 if schema.get("type") == "integer" else value
            if schema.get("type") != "integer":
                node["exclusiveMinimum"] = True
        elif key == "properties":
            node["properties"] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            node[key] = structural(value, defs)
        elif key == "prefixItems":
            continue
        else:
            node[key] = value
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    return node


def _schema_of(model: type[Resource]) -> dict[str, Any]:
    full = model.model_json_schema(by_alias=True)
    defs = full.get("$defs", {})
    spec = structural(full["properties"]["spec"], defs)
    status = structural(full["properties"]["status"], defs)
    status.pop("default", None)
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
    }


def crd_for(model: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    info = model.INFO
    columns = [
        {"name": name, "type": type_, "jsonPath": path, **({"priority": 1} if priority else {})}
        for name, path, type_, priority in info.printer_columns
    ]
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": info.short_names,
                "categories": ["gastown"],
            },
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _schema_of(model)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """Writes shared sub-schemas out in full: no YAML anchors in a CRD."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(model: type[Resource]) -> str:
    header = "# Generated from crds/ by `gastown crds generate`. Do not edit.\n"
    body = yaml.dump(crd_for(model), Dumper=_PlainDumper, sort_keys=False, width=100)
    return header + body


def file_name(model: type[Resource]) -> str:
    return f"{GROUP}_{model.INFO.plural}.yaml"


def generate(directory: Path = GENERATED_DIR) -> list[Path]:
    """Write one CRD file per kind; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in KINDS.values():
        path = directory / file_name(model)
        path.write_text(render(model))
        written.append(path)
    return written
