"""Reading manifests: files, directories and stdin, multi-document YAML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from crds import InvalidResource, Resource, parse_resource


def _documents(source: str) -> list[tuple[str, Any]]:
    """(where, document) for every non-empty YAML document in a source."""
    if source == "-":
        texts = [("stdin", sys.stdin.read())]
    else:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        elif path.exists():
            files = [path]
        else:
            raise InvalidResource(source, ["no such file or directory"])
        texts = [(str(file), file.read_text()) for file in files]
    documents = []
    for where, text in texts:
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            raise InvalidResource(where, [f"not valid YAML: {error}"]) from None
        documents += [(where, document) for document in loaded if document is not None]
    return documents


def load(sources: list[str], namespace: str) -> list[Resource]:
    """Every resource in the sources, or InvalidResource listing every problem in all of them."""
    resources, problems = [], []
    for source in sources:
        for _, document in _documents(source):
            try:
                resources.append(parse_resource(document, namespace))
            except InvalidResource as error:
                problems += [f"{error.ref}: {problem}" for problem in error.problems]
    seen: set[str] = set()
    for resource in resources:
        if resource.ref in seen:
            problems.append(f"{resource.ref}: appears twice in the input")
        seen.add(resource.ref)
    if problems:
        raise InvalidResource("", problems)
    return resources
