"""Bad input, generated, end to end: bent manifests through the real `gastown apply`, and through
kubectl, the (fake) API server and `gastown bridge`.

tests/unit/test_bad_input.py runs many examples through the same readers in
process; this runs a few through the real processes, where a crash or a
traceback would show: the CLI's exit code and its stderr; the bridge's
Events and the status on the object, and the bridge still running.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crds import KINDS
from tests.helpers import wait_until
from tests.integration.conftest import Cluster
from tests.integration.test_cli import gastown
from tests.unit.test_bad_input import bent_manifests

# A few examples a run (each starts a CLI process and waits on the bridge); new ones every run.
END_TO_END = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NUMBERS = itertools.count()


def named(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """The manifest under `name`, unless the bending took its metadata away."""
    renamed: dict[str, Any] = json.loads(json.dumps(manifest))
    if isinstance(renamed.get("metadata"), dict):
        renamed["metadata"]["name"] = name
    return renamed


@END_TO_END
@given(manifest=bent_manifests(json_only=True), via=st.sampled_from(["gastown apply", "kubectl"]))
async def test_a_bent_manifest_gets_a_clear_answer_through_the_real_processes(
    manifest: dict[str, Any], via: str, cluster: Cluster, tmp_path: Path
) -> None:
    """`gastown apply` exits 0 or 1 with one clear line per problem, never a traceback; an object the
    API server took gets an Event naming its problems or a status from its workflow, and the bridge
    lives on."""
    name = f"fuzz-{next(NUMBERS)}"
    bent = named(manifest, name)
    if via == "gastown apply":
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(bent))
        result = await gastown(cluster.settings, "apply", "-f", str(path))
        assert result.code in (0, 1) and "Traceback" not in result.err, result.err[-2000:]
        if result.code == 1:
            assert all(": " in line for line in result.err.splitlines()), result.err
        return
    code, _, _ = await cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(bent))
    if code != 0:
        return  # kubectl, or the API server, refused it: not ours to answer

    def answered() -> str | None:
        for event in cluster.api.objects("events"):
            if event["involvedObject"]["name"] == name:
                return str(event["message"])
        for kind in KINDS.values():
            for found in cluster.api.objects(kind.INFO.plural):
                if found["metadata"]["name"] == name and found.get("status"):
                    return "status"
        return None

    answer = await wait_until(answered, f"the bridge to answer {name}", timeout=60)
    assert "Traceback" not in answer
    assert cluster.bridge is not None and cluster.bridge.returncode is None
