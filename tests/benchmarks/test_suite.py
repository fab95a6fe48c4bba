"""`make bench` on a fresh machine: every benchmark runs, and a failure names itself."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

import benchmarks.__main__ as suite
from benchmarks.refinery import branches_repo, copy_of, plain_loop


def test_one_failing_benchmark_does_not_hide_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When benchmarks fail, the suite still runs every one, then exits 1 naming those that failed."""
    attempted: list[str] = []

    def failing(argv: list[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        attempted.append(argv[2].removeprefix("benchmarks."))
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr("subprocess.run", failing)
    monkeypatch.setattr(suite, "RESULTS", tmp_path)
    assert suite.main(["--quick", "--only", "refinery", "witness"]) == 1
    assert attempted == ["refinery", "witness"]
    assert "failed: refinery, witness" in capsys.readouterr().err
    assert "Failed (exit 3)" in (tmp_path / "summary.md").read_text()


def test_the_plain_git_loop_merges_without_a_global_git_identity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The refinery benchmark's plain loop merges on a machine whose user has no git identity."""
    rig = branches_repo(tmp_path / "original", 2)
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for variable in (
        "EMAIL",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
    ):
        monkeypatch.delenv(variable, raising=False)
    copy = copy_of(rig, tmp_path / "plain")
    plain_loop(copy, ["polecat/p000", "polecat/p001"])
    log = subprocess.run(
        ["git", "-C", str(copy.remote), "log", "--format=%s", "main"], capture_output=True, text=True
    )
    assert log.stdout.count("Merge polecat/") == 2
