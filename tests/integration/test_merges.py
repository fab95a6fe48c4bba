"""The merge activities on real git: a bare remote, a user's clone, and the refinery's own clone.

Each activity runs in temporalio's ActivityEnvironment (heartbeats and all),
without a server: what is checked is what lands on the remote.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from git import Actor, Repo
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.merges import MergeActivities
from contracts.merges import Candidate, CheckRequest, Part, PrepareRequest, Recipe
from crds.rig import RigSpec
from tests.helpers import GitRig

WHEN = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def recipe(*branches: str, strategy: str = "merge", resolution: str = "manual") -> Recipe:
    return Recipe.model_validate(
        {
            "rig": "athena",
            "target": "main",
            "strategy": strategy,
            "resolution": resolution,
            "refinery": "default/refinery",
            "when": WHEN,
            "parts": [
                Part(branch=branch, polecat=branch.split("/")[-1], namespace="default", bead_id=f"at-{i}")
                for i, branch in enumerate(branches)
            ],
        }
    )


async def run(activity: Any, *args: Any) -> Any:
    return await ActivityEnvironment().run(activity, *args)


async def prepare(merges: MergeActivities, rig: GitRig, recipe: Recipe) -> Candidate:
    spec = RigSpec(local_path=str(rig.checkout), git_url=str(rig.remote))
    candidate: Candidate = await run(merges.prepare, PrepareRequest(rig=spec, recipe=recipe))
    return candidate


async def test_merge_lands_a_merge_commit_that_names_bead_and_polecat(
    git_rig: GitRig, tmp_path: Path
) -> None:
    """strategy merge: the remote's main gets a merge commit naming the bead and the polecat, and the files."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"nux.txt": "from nux\n"})
    candidate = await prepare(merges, git_rig, recipe("polecat/nux"))
    assert candidate.stacked == ["polecat/nux"] and candidate.tip
    landed = await run(merges.land, candidate)
    assert git_rig.remote_branches()["main"] == landed.commit == candidate.tip
    assert git_rig.files_on("main")["nux.txt"] == "from nux\n"
    message = str(Repo(git_rig.remote).commit("main").message)
    assert message.startswith("Merge polecat/nux into main")
    assert "Bead: at-0" in message and "Polecat: default/nux" in message
    assert len(Repo(git_rig.remote).commit("main").parents) == 2


async def test_rebase_keeps_main_linear(git_rig: GitRig, tmp_path: Path) -> None:
    """strategy rebase: the branch's commits sit on main in a straight line, no merge commit."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    git_rig.push_branch("polecat/slit", {"slit.txt": "s\n"}, author="slit")
    for branch in ("polecat/nux", "polecat/slit"):
        await run(merges.land, await prepare(merges, git_rig, recipe(branch, strategy="rebase")))
    assert git_rig.log() == ["slit: write slit.txt", "nux: write nux.txt", "initial commit"]
    assert all(len(c.parents) <= 1 for c in Repo(git_rig.remote).iter_commits("main"))


async def test_squash_makes_one_commit_naming_bead_and_polecat(git_rig: GitRig, tmp_path: Path) -> None:
    """strategy squash: one commit, authored by the polecat, whose message names the bead and the polecat."""
    merges = MergeActivities(tmp_path / "home")
    repo = Repo(git_rig.checkout)
    git_rig.push_branch("polecat/nux", {"a.txt": "1\n"})
    repo.git.checkout("-q", "polecat/nux")
    (git_rig.checkout / "b.txt").write_text("2\n")
    repo.index.add(["b.txt"])
    nux = Actor("nux", "nux@example.com")
    repo.index.commit("nux: second step", author=nux, committer=nux)
    repo.git.push("-q", "origin", "polecat/nux")
    await run(merges.land, await prepare(merges, git_rig, recipe("polecat/nux", strategy="squash")))
    head = Repo(git_rig.remote).commit("main")
    message = str(head.message)
    assert len(head.parents) == 1 and head.parents[0].message == "initial commit"
    assert message.startswith("at-0: squashed work of polecat nux")
    assert "- nux: second step" in message and "Polecat: default/nux" in message
    assert head.author.name == "nux"
    assert set(git_rig.files_on("main")) == {"README.md", "a.txt", "b.txt"}


@pytest.mark.parametrize("strategy", ["merge", "rebase", "squash"])
async def test_conflicts(git_rig: GitRig, tmp_path: Path, strategy: str) -> None:
    """manual lists the conflicting files and stacks nothing; theirs and ours land with that side's text."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"README.md": "nux's readme\n"})
    git_rig.push_branch("polecat/slit", {"README.md": "slit's readme\n"}, author="slit")
    await run(merges.land, await prepare(merges, git_rig, recipe("polecat/slit", strategy=strategy)))

    manual = await prepare(merges, git_rig, recipe("polecat/nux", strategy=strategy))
    assert manual.conflicts == {"polecat/nux": ["README.md"]} and manual.tip is None

    theirs = await prepare(merges, git_rig, recipe("polecat/nux", strategy=strategy, resolution="theirs"))
    await run(merges.land, theirs)
    assert git_rig.files_on("main")["README.md"] == "nux's readme\n"

    ace = {"README.md": "ace's readme\n", "ace.txt": "a\n"}
    git_rig.push_branch("polecat/ace", ace, author="ace", base="polecat/slit")
    ours = await prepare(merges, git_rig, recipe("polecat/ace", strategy=strategy, resolution="ours"))
    await run(merges.land, ours)
    files = git_rig.files_on("main")
    assert files["README.md"] == "nux's readme\n" and files["ace.txt"] == "a\n"


async def test_a_recipe_makes_the_same_commit_anywhere(git_rig: GitRig, tmp_path: Path) -> None:
    """Two workers with separate clones make the same candidate commit from one recipe."""
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    git_rig.push_branch("polecat/slit", {"slit.txt": "s\n"}, author="slit")
    for strategy in ("merge", "rebase", "squash"):
        wanted = recipe("polecat/nux", "polecat/slit", strategy=strategy)
        first = await prepare(MergeActivities(tmp_path / f"a-{strategy}"), git_rig, wanted)
        second = await prepare(MergeActivities(tmp_path / f"b-{strategy}"), git_rig, wanted)
        assert first.tip and first.tip == second.tip, strategy
        assert first.stacked == ["polecat/nux", "polecat/slit"]


async def test_a_lost_clone_rebuilds_the_tested_commit(git_rig: GitRig, tmp_path: Path) -> None:
    """Checks and landing on a worker without the clone use the very commit that was prepared."""
    home = tmp_path / "home"
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    candidate = await prepare(MergeActivities(home), git_rig, recipe("polecat/nux"))
    shutil.rmtree(home)
    merges = MergeActivities(home)
    request = CheckRequest(
        candidate=candidate, commands=["git log -1 --format=%H"], timeout=timedelta(seconds=30)
    )
    [result] = await run(merges.check, request)
    assert result.passed and result.output == candidate.tip
    shutil.rmtree(home)
    landed = await run(merges.land, candidate)
    assert landed.commit == candidate.tip == git_rig.remote_branches()["main"]


async def test_landing_twice_lands_once(git_rig: GitRig, tmp_path: Path) -> None:
    """A landing retried after its push went through finds its commit there and pushes nothing."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    candidate = await prepare(merges, git_rig, recipe("polecat/nux"))
    await run(merges.land, candidate)
    again = await run(merges.land, candidate)
    assert again.commit == candidate.tip
    assert git_rig.log().count("Merge polecat/nux into main") == 1


async def test_a_moved_target_is_not_forced(git_rig: GitRig, tmp_path: Path) -> None:
    """Someone pushed to main after the candidate was made: landing refuses (TargetMoved), main keeps theirs."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    candidate = await prepare(merges, git_rig, recipe("polecat/nux"))
    moved = git_rig.push_branch("main", {"hotfix.txt": "h\n"}, author="human")
    with pytest.raises(Exception) as raised:
        await run(merges.land, candidate)
    assert isinstance(raised.value, ApplicationError) and raised.value.type == "TargetMoved"
    assert git_rig.remote_branches()["main"] == moved


async def test_checks_run_in_the_candidate_without_a_shell(git_rig: GitRig, tmp_path: Path) -> None:
    """Checks see the candidate's files; shell syntax is a plain word; the first failure stops the rest."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    candidate = await prepare(merges, git_rig, recipe("polecat/nux"))
    commands = [
        "cat nux.txt",
        "echo $HOME;",
        f"{sys.executable} -c 'import sys; print(\"red\"); sys.exit(3)'",
        "echo never",
    ]
    results = await run(
        merges.check, CheckRequest(candidate=candidate, commands=commands, timeout=timedelta(seconds=30))
    )
    assert [(r.passed, r.exit_code, r.output) for r in results] == [
        (True, 0, "n"),
        (True, 0, "$HOME;"),
        (False, 3, "red"),
    ]


async def test_a_check_that_runs_too_long_fails(git_rig: GitRig, tmp_path: Path) -> None:
    """A check past its time is stopped and fails, saying so."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    candidate = await prepare(merges, git_rig, recipe("polecat/nux"))
    request = CheckRequest(candidate=candidate, commands=["sleep 30"], timeout=timedelta(seconds=0.5))
    [result] = await run(merges.check, request)
    assert not result.passed and result.exit_code is None and "stopped after" in result.output


async def test_gone_and_merged_branches_are_left_out(git_rig: GitRig, tmp_path: Path) -> None:
    """A branch not on the remote is missing; one main already holds is already merged; neither is stacked."""
    merges = MergeActivities(tmp_path / "home")
    nux = git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    await run(merges.land, await prepare(merges, git_rig, recipe("polecat/nux")))
    Repo(git_rig.checkout).git.push("-q", "origin", f"{nux}:refs/heads/polecat/nux")  # back, as it was
    candidate = await prepare(merges, git_rig, recipe("polecat/gone", "polecat/nux"))
    assert candidate.missing == ["polecat/gone"] and candidate.already == ["polecat/nux"]
    assert candidate.tip is None


async def test_landing_deletes_only_branches_still_at_the_landed_commit(
    git_rig: GitRig, tmp_path: Path
) -> None:
    """Landed branches leave the remote with the same push, except one someone pushed more to since."""
    merges = MergeActivities(tmp_path / "home")
    git_rig.push_branch("polecat/nux", {"nux.txt": "n\n"})
    git_rig.push_branch("polecat/slit", {"slit.txt": "s\n"}, author="slit")
    candidate = await prepare(merges, git_rig, recipe("polecat/nux", "polecat/slit"))
    repo = Repo(git_rig.checkout)
    repo.git.checkout("-q", "polecat/slit")
    (git_rig.checkout / "more.txt").write_text("more\n")
    repo.index.add(["more.txt"])
    repo.index.commit("slit: more")
    repo.git.push("-q", "origin", "polecat/slit")
    landed = await run(merges.land, candidate)
    assert landed.pruned == ["polecat/nux"]
    assert set(git_rig.remote_branches()) == {"main", "polecat/slit"}
    assert git_rig.remote_branches()["main"] == candidate.tip
    again = await run(merges.land, candidate)  # a retry: nothing more to do, nothing more deleted
    assert again.commit == candidate.tip and set(git_rig.remote_branches()) == {"main", "polecat/slit"}
