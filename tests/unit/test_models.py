"""The API models: the spec's defaults, and every rule a user can break."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.rig import RigClaim
from crds import InvalidResource, parse_duration, parse_resource
from crds.beadstore import BeadStore
from crds.convoy import Convoy
from crds.polecat import Polecat
from crds.refinery import Refinery
from crds.rig import Rig
from crds.witness import Witness

API = "gastown.gastown.io/v1alpha1"


def manifest(kind: str, spec: dict[str, Any], name: str = "x1", **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(document)
    return caught.value.problems


WORKING = {"rig": "athena", "desiredState": "Working", "beadID": "at-1234"}


def test_polecat_defaults_are_the_specs() -> None:
    """A minimal Polecat gets the spec's defaults: local mode, claude-code, namespace default."""
    polecat = parse_resource(manifest("Polecat", dict(WORKING)))
    assert isinstance(polecat, Polecat)
    assert polecat.spec.execution_mode == "local"
    assert polecat.spec.agent == "claude-code"
    assert polecat.namespace == "default"
    assert polecat.work_branch == "polecat/x1"


def test_kubernetes_block_defaults() -> None:
    """gitBranch defaults to main, apiKeySecretRef.key to api-key, workBranch to polecat/<name>."""
    spec = dict(
        WORKING,
        executionMode="kubernetes",
        kubernetes={
            "gitRepository": "git@github.com:org/repo.git",
            "activeDeadlineSeconds": 3600,
            "apiKeySecretRef": {"name": "anthropic"},
        },
    )
    polecat = parse_resource(manifest("Polecat", spec))
    assert isinstance(polecat, Polecat)
    assert polecat.spec.kubernetes is not None
    assert polecat.spec.kubernetes.git_branch == "main"
    assert polecat.spec.kubernetes.api_key_secret_ref is not None
    assert polecat.spec.kubernetes.api_key_secret_ref.key == "api-key"
    assert polecat.work_branch == "polecat/x1"


def test_other_kinds_defaults() -> None:
    """Witness, Refinery, Rig, BeadStore and Convoy carry the spec's defaults."""
    witness = parse_resource(manifest("Witness", {"rigRef": "athena"}))
    assert isinstance(witness, Witness)
    assert (witness.spec.check_interval, witness.spec.stuck_threshold) == ("30s", "10m")
    assert (witness.spec.actions.on_stuck, witness.spec.actions.on_failed) == ("notify", "notify")
    refinery = parse_resource(manifest("Refinery", {"rigRef": "athena"}))
    assert isinstance(refinery, Refinery)
    assert refinery.spec.target_branch == "main"
    assert refinery.spec.strategy == "merge"
    assert refinery.spec.auto_merge is False
    assert refinery.spec.conflict_resolution == "manual"
    rig = parse_resource(manifest("Rig", {"gitURL": "git@x:y.git"}))
    assert isinstance(rig, Rig)
    assert rig.spec.default_branch == "main"
    store = parse_resource(
        manifest("BeadStore", {"rigRef": "athena", "source": {"type": "jsonl", "path": "a"}})
    )
    assert isinstance(store, BeadStore)
    assert store.spec.sync_interval == "5m"
    convoy = parse_resource(manifest("Convoy", {"trackedBeads": ["at-1"]}))
    assert isinstance(convoy, Convoy)
    assert convoy.spec.parallelism is None  # unlimited
    assert convoy.spec.auto_spawn is False


def test_spec_names_round_trip() -> None:
    """Fields keep the spec's spelling on the way out: beadID, gitURL, webhookURL."""
    polecat = parse_resource(manifest("Polecat", dict(WORKING)))
    assert polecat.to_wire()["spec"]["beadID"] == "at-1234"
    rig = parse_resource(manifest("Rig", {"gitURL": "git@x:y.git", "localPath": "/src"}))
    assert rig.to_wire()["spec"]["gitURL"] == "git@x:y.git"
    witness = parse_resource(
        manifest("Witness", {"rigRef": "a", "notifications": {"slack": {"webhookURL": "https://h/x"}}})
    )
    assert witness.to_wire()["spec"]["notifications"]["slack"]["webhookURL"] == "https://h/x"


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        (
            "Polecat",
            {**WORKING, "desiredState": "Running"},
            "spec.desiredState: Input should be 'Idle', 'Working' or 'Terminated'",
        ),
        ("Polecat", {"desiredState": "Idle"}, "spec.rig: required"),
        ("Polecat", {**WORKING, "agent": "gpt"}, "spec.agent: Input should be"),
        (
            "Polecat",
            {**WORKING, "executionMode": "docker"},
            "spec.executionMode: Input should be 'local' or 'kubernetes'",
        ),
        (
            "Polecat",
            {**WORKING, "agentConfig": {"temperature": 1.5}},
            "spec.agentConfig.temperature: Input should be less than or equal to 1",
        ),
        (
            "Polecat",
            {**WORKING, "agentConfig": {"maxTokens": 0}},
            "spec.agentConfig.maxTokens: Input should be greater than 0",
        ),
        (
            "Polecat",
            {**WORKING, "agentConfig": {"provider": "azure"}},
            "spec.agentConfig.provider: Input should be",
        ),
        (
            "Polecat",
            {"rig": "athena", "desiredState": "Working"},
            "spec.beadID: beadID or taskDescription is required when desiredState is Working",
        ),
        (
            "Polecat",
            {**WORKING, "agent": "custom"},
            "spec.agentConfig.command: required when agent is custom",
        ),
        (
            "Polecat",
            {**WORKING, "executionMode": "kubernetes"},
            "spec.kubernetes: required when executionMode is kubernetes",
        ),
        (
            "Polecat",
            {**WORKING, "executionMode": "kubernetes", "kubernetes": {"gitRepository": "git@x:y"}},
            "spec.kubernetes.activeDeadlineSeconds: required when executionMode is kubernetes",
        ),
        (
            "Polecat",
            {**WORKING, "executionMode": "kubernetes", "kubernetes": {"activeDeadlineSeconds": 60}},
            "spec.kubernetes.gitRepository: required when executionMode is kubernetes",
        ),
        (
            "Polecat",
            {**WORKING, "kubernetes": {"activeDeadlineSeconds": 0}},
            "spec.kubernetes.activeDeadlineSeconds: Input should be greater than 0",
        ),
        (
            "Polecat",
            {**WORKING, "kubernetes": {"workBranch": "feature..x"}},
            "spec.kubernetes.workBranch: not a valid git branch name",
        ),
        ("Polecat", {**WORKING, "beadID": "at 1; rm -rf /"}, "spec.beadID: String should match pattern"),
        ("Polecat", {**WORKING, "beadId": "at-1"}, "spec.beadId: unknown field"),
        ("Polecat", {**WORKING, "rig": "Athena"}, "spec.rig: must be a DNS-1123 label"),
        (
            "Witness",
            {"rigRef": "a", "checkInterval": "30 seconds"},
            "spec.checkInterval: must be a Go duration",
        ),
        (
            "Witness",
            {"rigRef": "a", "actions": {"onStuck": "reboot"}},
            "spec.actions.onStuck: Input should be 'notify', 'restart' or 'terminate'",
        ),
        (
            "Refinery",
            {"rigRef": "a", "strategy": "octopus"},
            "spec.strategy: Input should be 'merge', 'rebase' or 'squash'",
        ),
        (
            "Refinery",
            {"rigRef": "a", "targetBranch": "-main"},
            "spec.targetBranch: not a valid git branch name",
        ),
        (
            "Refinery",
            {"rigRef": "a", "requiredChecks": ["make 'test"]},
            "spec.requiredChecks[0]: cannot be split into words (No closing quotation)",
        ),
        (
            "Refinery",
            {"rigRef": "a", "requiredChecks": ["  "]},
            "spec.requiredChecks[0]: must name a program",
        ),
        (
            "Refinery",
            {"rigRef": "a", "batchSize": 0},
            "spec.batchSize: Input should be greater than or equal to 1",
        ),
        ("Refinery", {"rigRef": "a", "checkTimeout": "soon"}, "spec.checkTimeout: must be a Go duration"),
        ("Rig", {"defaultBranch": "ma in"}, "spec.defaultBranch: not a valid git branch name"),
        (
            "BeadStore",
            {"rigRef": "a", "source": {"type": "csv", "path": "x"}},
            "spec.source.type: Input should be 'jsonl', 'sqlite' or 'daemon'",
        ),
        ("BeadStore", {"rigRef": "a", "syncInterval": "5"}, "spec.syncInterval: must be a Go duration"),
        ("Convoy", {"parallelism": 0}, "spec.parallelism: Input should be greater than 0"),
        ("Convoy", {"trackedBeads": ["gt-1", "gt-1"]}, "spec.trackedBeads[1]: gt-1 is listed twice"),
        ("Convoy", {"trackedBeads": ["gt 1"]}, "spec.trackedBeads[0]: String should match pattern"),
        ("Convoy", {"autoSpawn": True}, "spec.rigRef: required when autoSpawn is true"),
        (
            "Convoy",
            {"rigRef": "a", "polecatTemplate": {"agent": "custom"}},
            "spec.polecatTemplate.agentConfig.command: required when agent is custom",
        ),
        (
            "Convoy",
            {"rigRef": "a", "polecatTemplate": {"beadID": "gt-1"}},
            "spec.polecatTemplate.beadID: unknown field",
        ),
    ],
)
def test_bad_input_names_field_and_rule(kind: str, spec: dict[str, Any], expected: str) -> None:
    """Each broken rule is reported as `<field path>: <rule>`."""
    found = problems(manifest(kind, spec))
    assert any(line.startswith(expected) for line in found), found


def test_error_names_the_resource() -> None:
    """The error text starts with the kind, namespace and name, as `gastown` prints it."""
    document = manifest("Polecat", {"rig": "athena", "desiredState": "Working"}, name="p1", namespace="team")
    with pytest.raises(InvalidResource) as caught:
        parse_resource(document)
    assert str(caught.value) == (
        "Polecat team/p1: spec.beadID: beadID or taskDescription is required when desiredState is Working"
    )


def test_every_problem_is_reported_at_once() -> None:
    """A manifest with three mistakes gets three lines, not one at a time."""
    found = problems(
        manifest(
            "Polecat", {"rig": "athena", "desiredState": "Nope", "agent": "gpt", "extra": 1}, name="Bad_Name"
        )
    )
    assert len(found) == 4, found


@pytest.mark.parametrize(
    ("name", "rule"),
    [("UPPER", "DNS-1123"), ("a" * 64, "at most 63"), ("-lead", "DNS-1123"), ("under_score", "DNS-1123")],
)
def test_names_are_dns_1123(name: str, rule: str) -> None:
    """metadata.name must be a DNS-1123 label."""
    found = problems(manifest("Polecat", dict(WORKING), name=name))
    assert any(line.startswith("metadata.name:") and rule in line for line in found), found


def test_rig_is_cluster_scoped() -> None:
    """A Rig with a namespace is refused: the kind is cluster-scoped."""
    found = problems(manifest("Rig", {}, namespace="default"))
    assert found == ["metadata.namespace: must be empty, the kind is cluster-scoped"]


def test_wrong_api_version_and_kind() -> None:
    """apiVersion and kind are checked before anything else."""
    assert problems({"apiVersion": "v1", "kind": "Polecat", "metadata": {"name": "a"}}) == [
        "apiVersion: must be gastown.gastown.io/v1alpha1 (got 'v1')"
    ]
    found = problems({"apiVersion": API, "kind": "Mayor", "metadata": {"name": "a"}})
    assert found[0].startswith("kind: must be one of Polecat, Convoy")


def test_huge_text_is_refused() -> None:
    """A taskDescription larger than 64 KiB is refused before it reaches Temporal."""
    found = problems(manifest("Polecat", {**WORKING, "taskDescription": "x" * 70_000}))
    assert found[0].startswith("spec.taskDescription: String should have at most 65536 characters")


def test_metadata_is_held_to_kubernetes_limits() -> None:
    """Annotations over 256 KiB and label values over 63 characters are refused, as the API server
    refuses them (seen: a 3 MB annotation was taken, and no workflow could be sent so large a spec)."""
    found = problems(manifest("Rig", {"localPath": "/src"}, annotations={"note": "x" * 300_000}))
    assert found[0].startswith(
        "metadata.annotations: Too long: must have at most 262144 bytes (these have 300004)"
    )
    found = problems(manifest("Rig", {"localPath": "/src"}, labels={"team": "x" * 64}))
    assert found[0].startswith("metadata.labels: team: a label value must be no more than 63 characters")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1.5h", 5400),
        ("0", 0),
        ("2h45m30s", 9930),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    """Durations use Go's syntax."""
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "m", "1h 30m", "-5s", "5S"])
def test_bad_go_durations(text: str) -> None:
    """What Go's time.ParseDuration refuses (or we refuse: negatives), we refuse."""
    with pytest.raises(ValueError, match="Go duration"):
        parse_duration(text)


def test_a_bead_store_claim_of_the_previous_version_is_read() -> None:
    """A rig's history from before the Refinery holds BeadStore claims with the field `store`: still read."""
    assert RigClaim.model_validate_json('{"store": "default/beads"}').holder == "default/beads"
    assert RigClaim(kind="Refinery", holder="default/refinery").model_dump() == {
        "kind": "Refinery",
        "holder": "default/refinery",
        "replaces": None,
    }
