"""docker-compose.yml's worker and bridge, run by Debian's docker-compose from the operator image.

The services start as the file describes them (their commands, health checks, the kubeconfig
mount), from `gastown/operator` as `make images` built it, with two changes an override file
makes: the host's network (our dockerd has no bridge) and the addresses of this test's Temporal
dev server and fake API server, for the compose file's own Temporal on PostgreSQL needs images we
cannot pull. Then the real path: kubectl applies a Rig to the fake API server, the bridge in its
container starts its workflow, the worker in its container runs it, and the status comes back.
"""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.settings import Settings
from tests.fake_apiserver import FakeApiServer
from tests.helpers import REPO_ROOT, free_port, kubectl_apply, kubectl_get, wait_until
from tests.integration.conftest import GitServer
from tests.kubelet import require_image

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def compose(
    project: str, override: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    files = ["-f", str(REPO_ROOT / "docker-compose.yml"), "-f", str(override)]
    return subprocess.run(
        ["docker-compose", *files, "-p", project, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


@pytest.fixture
async def services(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, Path, int]]:
    """The worker and bridge services up, reaching this test's dev server and fake API server."""
    require_image(COMPOSE["services"]["worker"]["image"])
    api = FakeApiServer()
    await api.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(api.kubeconfig()))
    kubeconfig.chmod(0o644)  # the image's user reads it
    liveness = free_port()
    host: dict[str, Any] = {
        "network_mode": "host",
        "environment": {
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "GASTOWN_TASK_QUEUE": settings.task_queue,
        },
    }
    override = tmp_path / "docker-compose.override.yml"
    override.write_text(
        yaml.safe_dump(
            {
                "version": "2.4",
                "services": {
                    "worker": host,
                    "bridge": {
                        **host,
                        "command": ["bridge", "--liveness", f"http://127.0.0.1:{liveness}/healthz"],
                    },
                },
            }
        )
    )
    project = f"gastown-test-{uuid.uuid4().hex[:8]}"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "KUBECONFIG_FILE": str(kubeconfig)}
    started = compose(
        project, override, "up", "--detach", "--no-deps", "--no-build", "worker", "bridge", env=env
    )
    try:
        assert started.returncode == 0, started.stderr
        yield api, kubeconfig, liveness
    finally:
        logs = compose(project, override, "logs", "--no-color", env=env).stdout
        compose(project, override, "down", "--volumes", "--timeout", "10", env=env)
        await api.stop()
        print(logs)  # shown when the test fails


async def test_compose_worker_and_bridge_run_a_rig_from_the_operator_image(
    services: tuple[FakeApiServer, Path, int], git_daemon: GitServer, rig_name: str
) -> None:
    """kubectl apply of a Rig whose repository a git daemon serves: the bridge and worker services
    (containers of gastown/operator) clone it and take the Rig to Ready; the bridge's liveness
    endpoint answers."""
    api, kubeconfig, liveness = services
    await wait_until(lambda: api.watching_every_kind(), "the bridge in its container to watch every kind", 60)
    rig = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Rig",
        "metadata": {"name": rig_name},
        "spec": {"gitURL": git_daemon.url},
    }
    await kubectl_apply(kubeconfig, rig)

    async def settled() -> dict[str, Any] | None:
        status = ((await kubectl_get(kubeconfig, "rigs", rig_name)) or {}).get("status", {})
        return status if status.get("phase") == "Ready" or status.get("message") else None

    status = await wait_until(settled, f"rig {rig_name} to settle through the compose services", 60)
    assert status["phase"] == "Ready", status
    with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=5) as answer:
        assert answer.status == 200
