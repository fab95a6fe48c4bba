"""Branch-name validation agrees with the real `git check-ref-format --branch`."""

from __future__ import annotations

import subprocess

import pytest

from crds.common import check_branch_name

NAMES = [
    "main", "polecat/furiosa", "feature/x-1", "release-1.0", "a/b/c", "v1.2.3", "UPPER", "with_underscore",
    "@", "-lead", "a..b", "a b", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b", "a@{b", "a//b",
    "/lead", "trail/", "trail.", ".hidden", "a/.hidden", "x.lock", "a/b.lock", "a\tb", "a\x7fb", "ok@x",
    "a.b/c", "lock.x", "a/b.", "é-accent",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_same_verdict_as_git(name: str) -> None:
    """For each name, we accept it exactly when git does."""
    git_accepts = (
        subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True).returncode == 0
    )
    try:
        check_branch_name(name)
        ours = True
    except ValueError:
        ours = False
    assert ours == git_accepts
