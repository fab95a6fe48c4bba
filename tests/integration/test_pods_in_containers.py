"""Kubernetes-mode polecats whose pods run for real, in the polecat image, under Docker.

kubectl (the real binary) -> `gastown bridge` -> Temporal -> the worker, which creates the pod on
the fake API server; the test kubelet (tests/kubelet.py) runs it as Docker containers of
`gastown/polecat` (built by `make images`) and reports its status as a kubelet does. The API
server and the kubelet are the stand-ins; the image, its entrypoint, git, ssh, the agent CLIs and
the kernel's limits are real. Repositories are served over the git protocol (`git daemon`) or SSH
(Debian's sshd), both on this host's loopback, which the containers share.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.settings import Settings
from tests.helpers import GitRig, free_port, make_git_rig, wait_until
from tests.integration.conftest import Cluster, GitServer
from tests.integration.test_agents import WHOLE_FILE, commit, program
from tests.kubelet import DockerKubelet, require_image
from tests.model_server import ModelServer, ToolCall, serve

MODEL_KEY = "sk-from-the-cluster-secret"


@pytest.fixture(scope="module", autouse=True)
def polecat_image() -> None:
    """The image the worker gives its pods by default, built by `make images`."""
    require_image(Settings().polecat_image)


@pytest.fixture
async def kubelet(cluster: Cluster, tmp_path: Path) -> AsyncIterator[DockerKubelet]:
    async with DockerKubelet(cluster.api, tmp_path / "node") as running:
        yield running


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def rig_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Rig",
        "metadata": {"name": name},
        "spec": {},
    }


def pod_polecat(name: str, rig: str, repository: str, agent: str, **kubernetes: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "rig": rig,
            "desiredState": "Working",
            "beadID": "gt-7",
            "taskDescription": "Add a file saying who made it, and commit it.",
            "executionMode": "kubernetes",
            "agent": agent,
            "kubernetes": {"gitRepository": repository, "activeDeadlineSeconds": 600, **kubernetes},
        },
    }


async def finished(cluster: Cluster, name: str, timeout: float = 150) -> dict[str, Any]:
    """The polecat once Succeeded or Failed, as kubectl shows it."""

    async def done() -> dict[str, Any] | None:
        found = await cluster.get("polecats", name)
        phase = (found or {}).get("status", {}).get("phase")
        return found if phase in ("Succeeded", "Failed") else None

    return await wait_until(done, f"{name} to finish", timeout)


# agent -> (the model server's plan and final answer, the provider, its endpoint variable and path)
AGENTS: dict[str, tuple[list[ToolCall | None], str, str, str, str]] = {
    "claude-code": ([commit("claude")], "Done.", "anthropic", "ANTHROPIC_BASE_URL", ""),
    "opencode": ([commit("opencode")], "Done.", "openai", "OPENAI_BASE_URL", "/v1"),
    "aider": ([], WHOLE_FILE, "openai", "OPENAI_BASE_URL", "/v1"),
}


@pytest.mark.parametrize("agent", list(AGENTS))
async def test_each_agent_in_the_polecat_image_pushes_its_commit(
    agent: str,
    cluster: Cluster,
    kubelet: DockerKubelet,
    git_daemon: GitServer,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kubectl apply of a kubernetes-mode polecat: its pod runs in the polecat image, the init
    container clones, the agent (key from the cluster's Secret, through its pod's gateway) commits
    with its own tools, the entrypoint pushes; the polecat is Succeeded with that commit."""
    plan, final, provider, variable, path = AGENTS[agent]
    async for model in serve(ModelServer(plan, final=final)):
        monkeypatch.setenv(variable, f"{model.url}{path}")  # the worker's configuration
        manifest = pod_polecat("slit", rig_name, git_daemon.url, agent, apiKeySecretRef={"name": "model-key"})
        manifest["spec"]["agentConfig"] = {"provider": provider, "model": "test-model"}
        await cluster.apply(rig_manifest(rig_name), secret("model-key", **{"api-key": MODEL_KEY}), manifest)

        done = await finished(cluster, "slit")

        assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
        assert f"{program(agent)}.txt" in git_daemon.rig.files_on("polecat/slit")
        assert done["status"]["commit"] == git_daemon.rig.remote_branches()["polecat/slit"]
        assert all(any(MODEL_KEY in value for value in headers.values()) for headers in model.headers)


# A custom agent that writes what its container is, and commits it: user, groups, whether the root
# filesystem takes a write, its capabilities, no_new_privs, its directory, the secret's file mode.
INSPECT = """
import json, os, pathlib, subprocess
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
try:
    open("/usr/written", "w")
    root = "writable"
except OSError as error:
    root = error.strerror
facts = {
    "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()), "root": root,
    "CapEff": status["CapEff"].strip(), "NoNewPrivs": status["NoNewPrivs"].strip(), "cwd": os.getcwd(),
    "key_mode": oct(os.stat("/etc/gastown/git/ssh-privatekey").st_mode & 0o777),
    "home_writable": os.access(os.environ["HOME"], os.W_OK),
}
pathlib.Path("facts.json").write_text(json.dumps(facts))
subprocess.run(["git", "add", "facts.json"], check=True)
subprocess.run(["git", "commit", "-q", "-m", "facts"], check=True)
"""


async def test_the_pod_runs_as_its_security_context_says(
    cluster: Cluster, kubelet: DockerKubelet, git_daemon: GitServer, rig_name: str
) -> None:
    """In the container the agent runs as uid 65532 with the fsGroup, on a read-only root, with no
    capabilities and no new privileges, in the clone; the git secret's key is 0440 (0400 and the
    fsGroup's read), its home an emptyDir it can write."""
    manifest = pod_polecat("slit", rig_name, git_daemon.url, "custom", gitSecretRef={"name": "deploy-key"})
    manifest["spec"]["agentConfig"] = {"command": ["python3", "-c", INSPECT]}
    await cluster.apply(
        rig_manifest(rig_name), secret("deploy-key", **{"ssh-privatekey": "not a key\n"}), manifest
    )

    done = await finished(cluster, "slit")

    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    facts = json.loads(git_daemon.rig.files_on("polecat/slit")["facts.json"])
    assert facts == {
        "uid": 65532, "gid": 65532, "groups": [65532], "root": "Read-only file system",
        "CapEff": "0000000000000000", "NoNewPrivs": "1", "cwd": "/workspace/repo", "key_mode": "0o440",
        "home_writable": True,
    }  # fmt: skip


async def test_a_memory_limit_below_the_agents_need_is_a_real_oom_kill(
    cluster: Cluster, kubelet: DockerKubelet, git_daemon: GitServer, rig_name: str
) -> None:
    """A 64 MiB limit on an agent that wants 512 MiB: the kernel kills it, and the polecat is Failed
    OOMKilled, saying so in its message."""
    manifest = pod_polecat(
        "nux", rig_name, git_daemon.url, "custom", resources={"limits": {"memory": "64Mi"}}
    )
    manifest["spec"]["agentConfig"] = {"command": ["python3", "-c", "x = bytearray(512 * 2**20)"]}
    await cluster.apply(rig_manifest(rig_name), manifest)

    done = await finished(cluster, "nux")

    assert done["status"]["phase"] == "Failed"
    assert "OOMKilled" in done["status"]["message"]
    assert next(c for c in done["status"]["conditions"] if c["type"] == "Failed")["reason"] == "OOMKilled"


async def test_an_image_that_does_not_exist_fails_with_the_pull_error(
    cluster: Cluster, kubelet: DockerKubelet, git_daemon: GitServer, rig_name: str
) -> None:
    """A polecat naming an image no registry has: its pod backs off pulling, and the polecat is
    Failed with the kubelet's ImagePullBackOff message naming the image."""
    manifest = pod_polecat("slit", rig_name, git_daemon.url, "custom", image="registry.invalid/nope:1")
    manifest["spec"]["agentConfig"] = {"command": ["true"]}
    await cluster.apply(rig_manifest(rig_name), manifest)

    done = await finished(cluster, "slit")

    assert done["status"]["phase"] == "Failed"
    assert 'ImagePullBackOff: Back-off pulling image "registry.invalid/nope:1"' in done["status"]["message"]


@dataclass
class SshServer:
    rig: GitRig
    url: str
    client_key: str  # the private key that may log in
    known_hosts: str  # the server's host key, pinned as ssh's known_hosts line


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """Debian's sshd on a loopback port, serving the rig's bare remote to one key."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    assert Path(binary).exists(), "openssh-server is installed by .ci/run"
    rig = make_git_rig(tmp_path / "rig")
    etc = tmp_path / "sshd"
    etc.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc / name)], check=True)
    (etc / "authorized_keys").write_text((etc / "client.pub").read_text())
    port = free_port()
    (etc / "config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {etc / 'host'}\nAuthorizedKeysFile {etc / 'authorized_keys'}\n"
        f"PidFile {etc / 'pid'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "UsePAM no\nStrictModes no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation's directory
    server = subprocess.Popen([binary, "-D", "-e", "-f", str(etc / "config")])
    host_key = " ".join((etc / "host.pub").read_text().split()[:2])
    yield SshServer(rig, f"ssh://root@127.0.0.1:{port}{rig.remote}", (etc / "client").read_text(),
                    f"[127.0.0.1]:{port} {host_key}\n")  # fmt: skip
    server.terminate()
    server.wait()


COMMIT_A_FILE = ["sh", "-c", "echo over ssh > ssh.txt && git add ssh.txt && git commit -q -m ssh"]


async def test_a_clone_over_ssh_with_the_pinned_host_key_pushes(
    cluster: Cluster, kubelet: DockerKubelet, sshd: SshServer, rig_name: str
) -> None:
    """gitSecretRef holds the deploy key and known_hosts: the pod clones and pushes over real SSH."""
    manifest = pod_polecat("slit", rig_name, sshd.url, "custom", gitSecretRef={"name": "deploy-key"})
    manifest["spec"]["agentConfig"] = {"command": COMMIT_A_FILE}
    key = secret("deploy-key", **{"ssh-privatekey": sshd.client_key, "known_hosts": sshd.known_hosts})
    await cluster.apply(rig_manifest(rig_name), key, manifest)

    done = await finished(cluster, "slit")

    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert sshd.rig.files_on("polecat/slit")["ssh.txt"] == "over ssh\n"


async def test_a_host_key_other_than_the_pinned_one_is_refused(
    cluster: Cluster, kubelet: DockerKubelet, sshd: SshServer, rig_name: str, tmp_path: Path
) -> None:
    """known_hosts pins another key: ssh refuses the server, the clone fails, nothing is pushed."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    pinned = sshd.known_hosts.split()[0] + f" {other}\n"
    manifest = pod_polecat("slit", rig_name, sshd.url, "custom", gitSecretRef={"name": "deploy-key"})
    manifest["spec"]["agentConfig"] = {"command": COMMIT_A_FILE}
    key = secret("deploy-key", **{"ssh-privatekey": sshd.client_key, "known_hosts": pinned})
    await cluster.apply(rig_manifest(rig_name), key, manifest)

    done = await finished(cluster, "slit")

    assert done["status"]["phase"] == "Failed"
    assert "Host key verification failed" in done["status"]["message"]
    assert "polecat/slit" not in sshd.rig.remote_branches()
