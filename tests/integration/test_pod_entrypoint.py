"""The polecat image's entrypoint, run for real against git repositories with a bare remote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch.pod_entrypoint import ssh_environment
from launch.pod_gateway import PodReport
from tests.helpers import REPO_ROOT, SCRIPTED_AGENT, GitRig, make_git_rig

ENTRYPOINT = [sys.executable, "-m", "launch.pod_entrypoint"]


def clone(
    rig: GitRig, base: str, branch: str, into: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The init container's step, from the rig's bare remote."""
    args = [
        "clone",
        "--repository",
        f"file://{rig.remote}",
        "--base",
        base,
        "--branch",
        branch,
        "--into",
        str(into),
    ]
    return subprocess.run([*ENTRYPOINT, *args], env={**os.environ, **env}, capture_output=True, text=True)


def run_agent(
    branch: str, agent: list[str], repo: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The agent container's step, in the cloned repository."""
    return subprocess.run(
        [*ENTRYPOINT, "run", "--branch", branch, "--", *agent],
        env={**os.environ, **env},
        cwd=repo,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def pod_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "GT_PROMPT": 'the task "; touch /tmp/x',
        "GT_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "GIT_AUTHOR_NAME": "slit",
        "GIT_COMMITTER_NAME": "slit",
        "GIT_AUTHOR_EMAIL": "slit@gastown.local",
        "GIT_COMMITTER_EMAIL": "slit@gastown.local",
    }


def test_clone_then_run_pushes_the_work_branch(tmp_path: Path, pod_env: dict[str, str]) -> None:
    """clone checks out the work branch; run runs the agent and pushes its commit on success."""
    rig = make_git_rig(tmp_path / "rig")
    repo = tmp_path / "workspace" / "repo"
    cloned = clone(rig, "main", "polecat/slit", repo, pod_env)
    assert cloned.returncode == 0, cloned.stderr
    agent = [sys.executable, str(SCRIPTED_AGENT), "--commit", "fix.txt=fixed"]
    done = run_agent("polecat/slit", agent, repo, pod_env)
    assert done.returncode == 0, done.stderr
    assert 'task: the task "; touch /tmp/x' in done.stdout  # the prompt reached the agent as a file
    report = PodReport.model_validate_json(Path(pod_env["GT_TERMINATION_LOG"]).read_text())
    assert (report.branch, report.commit) == ("polecat/slit", rig.remote_branches()["polecat/slit"])
    assert "committed fix.txt" in report.tail  # the agent's output, as the pod's log has it too
    assert rig.files_on("polecat/slit")["fix.txt"] == "fixed\n"


def test_a_restarted_pod_goes_on_from_its_pushed_work_branch(tmp_path: Path, pod_env: dict[str, str]) -> None:
    """clone of a work branch the remote already has checks it out, so a new attempt keeps the work."""
    rig = make_git_rig(tmp_path / "rig")
    first = tmp_path / "first"
    assert clone(rig, "main", "polecat/slit", first, pod_env).returncode == 0
    agent = [sys.executable, str(SCRIPTED_AGENT), "--commit", "fix.txt=fixed"]
    assert run_agent("polecat/slit", agent, first, pod_env).returncode == 0
    again = tmp_path / "again"
    cloned = clone(rig, "main", "polecat/slit", again, pod_env)
    assert cloned.returncode == 0, cloned.stderr
    assert (again / "fix.txt").read_text() == "fixed\n"
    head = subprocess.run(["git", "-C", str(again), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.stdout.strip() == rig.remote_branches()["polecat/slit"]


def test_failed_agent_pushes_nothing_and_keeps_its_code(tmp_path: Path, pod_env: dict[str, str]) -> None:
    """A failing agent's exit code is the container's; nothing is pushed, and the termination
    message has its last output."""
    rig = make_git_rig(tmp_path / "rig")
    repo = tmp_path / "repo"
    assert clone(rig, "main", "polecat/nux", repo, pod_env).returncode == 0
    agent = [sys.executable, str(SCRIPTED_AGENT), "--commit", "x.txt=x", "--exit", "4"]
    done = run_agent("polecat/nux", agent, repo, pod_env)
    assert done.returncode == 4
    assert "polecat/nux" not in rig.remote_branches()
    report = PodReport.model_validate_json(Path(pod_env["GT_TERMINATION_LOG"]).read_text())
    assert report.commit is None and "exiting with 4" in report.tail


def test_clone_of_a_missing_branch_fails(tmp_path: Path, pod_env: dict[str, str]) -> None:
    """A gitBranch that does not exist fails the init step with git's own error."""
    rig = make_git_rig(tmp_path / "rig")
    cloned = clone(rig, "nope", "polecat/x", tmp_path / "r", pod_env)
    assert cloned.returncode != 0
    assert "nope" in cloned.stderr


def test_git_key_is_copied_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mounted key is copied to a 0600 file that ssh accepts; git is told to use it."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "ssh-privatekey").write_text("not a real key\n")
    (secret / "known_hosts").write_text("github.com ssh-ed25519 AAAA\n")
    (secret / "ssh-privatekey").chmod(0o440)  # as the kubelet leaves it with fsGroup
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env = ssh_environment(str(secret))
    key = tmp_path / "home" / ".ssh" / "id_gastown"
    assert key.stat().st_mode & 0o777 == 0o600
    assert env["GIT_SSH_COMMAND"] == (
        f"ssh -i {key} -o IdentitiesOnly=yes -o UserKnownHostsFile={secret / 'known_hosts'} -o StrictHostKeyChecking=yes"
    )


def test_an_empty_secret_sets_nothing(tmp_path: Path) -> None:
    """An optional secret mounted empty (the worker's, when nobody created it) leaves git as it is."""
    assert ssh_environment(str(tmp_path)) == {}
    assert ssh_environment(None) == {}


# Run by a bare Python as a pod's user: reads its own environment through a child, before and after.
READ_OWN_ENVIRONMENT = """
import os, subprocess
from launch.unreadable import make_unreadable
def child_reads():
    return subprocess.run(["cat", f"/proc/{os.getpid()}/environ"], capture_output=True).returncode == 0
before = child_reads()
make_unreadable()
print(before, child_reads())
"""


def test_the_entrypoint_is_unreadable_to_its_agent() -> None:
    """After make_unreadable (the entrypoint holding a key), a child of the same non-root user, as
    a pod's agent is, can no longer read the process's environment from /proc; before, it could."""
    as_pod_user = ["setpriv", "--reuid=65532", "--regid=65532", "--clear-groups"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*as_pod_user, "/usr/bin/python3", "-c", READ_OWN_ENVIRONMENT],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert done.stdout.split() == ["True", "False"], done.stderr
