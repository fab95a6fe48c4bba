"""Bad input, generated: manifests of every kind, bent at random, through `gastown apply` and the bridge.

Each generated manifest starts from a valid example (examples/manifests/) and
has one field set to an arbitrary value, one removed, or one unknown added.
Whatever comes in, the answer is a valid resource small enough for Temporal's
payloads, or a clear error: one line per problem, naming the resource and
the field. Never a crash, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any, cast

import kopf
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.kubernetes import _resource
from cli import manifests
from crds import InvalidResource, Resource
from tests.helpers import REPO_ROOT

EXAMPLES = {
    path.name: yaml.safe_load(path.read_text())
    for path in sorted((REPO_ROOT / "examples" / "manifests").glob("*.yaml"))
}
PAYLOAD_LIMIT = 2 * 1024 * 1024  # Temporal refuses a larger payload
HUGE = ["x" * 300_000, "y" * 3_000_000, list(range(100_000))]  # past our bounds and Temporal's limit


def _scalars(json_only: bool) -> st.SearchStrategy[Any]:
    floats = st.floats(allow_nan=not json_only, allow_infinity=not json_only)
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=2**63),
        floats,
        st.text(),
        st.sampled_from(HUGE),
    )


def _values(json_only: bool) -> st.SearchStrategy[Any]:
    return st.recursive(
        _scalars(json_only),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=8,
    )


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def bent_manifests(draw: st.DrawFn, json_only: bool = False) -> dict[str, Any]:
    """An example manifest with one field set to anything, removed, or an unknown one added."""
    manifest: dict[str, Any] = json.loads(json.dumps(EXAMPLES[draw(st.sampled_from(sorted(EXAMPLES)))]))
    path = draw(st.sampled_from(_paths(manifest)))
    parent: Any = manifest
    for step in path[:-1]:
        parent = parent[step]
    change = draw(st.sampled_from(["set", "remove", "add"]))
    if change == "set":
        parent[path[-1]] = draw(_values(json_only))
    elif change == "remove":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=20))] = draw(_values(json_only))
    return manifest


def _answer_is_clear(problems: list[str]) -> None:
    """Each problem is one line that names what it is about, with no traceback."""
    assert problems
    for problem in problems:
        assert problem.strip() and "Traceback" not in problem
        assert ": " in problem, problem


def _fits(resource: Resource) -> None:
    assert len(json.dumps(resource.to_wire())) < PAYLOAD_LIMIT


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(manifest=bent_manifests())
def test_gastown_apply_reads_any_manifest_clearly(
    manifest: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A bent manifest in a file, as `gastown apply -f` reads it: valid resources that fit in a
    Temporal payload, or InvalidResource with one clear line per problem (which the CLI prints,
    exiting 1: tests/integration/test_cli.py)."""
    path = tmp_path_factory.mktemp("apply") / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest))
    try:
        resources = manifests.load([str(path)], "default")
    except InvalidResource as error:
        _answer_is_clear(error.problems)
    else:
        for resource in resources:
            _fits(resource)


@FUZZ
@given(manifest=bent_manifests(json_only=True))
def test_the_bridge_reads_any_object_clearly(manifest: dict[str, Any]) -> None:
    """A bent object as the bridge receives it from the API server (JSON): our resource, or kopf's
    PermanentError whose text (the Warning Event on the object) names each problem."""
    try:
        resource = _resource(kopf.Body(cast(kopf.RawBody, manifest)))
    except kopf.PermanentError as error:
        _answer_is_clear(str(error).splitlines())
    else:
        _fits(resource)
