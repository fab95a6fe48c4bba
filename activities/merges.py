"""Merges: candidates built in a refinery's own clone, checks run on them, and landing.

A refinery never works in a person's checkout. It keeps a bare clone of the
rig's remote under `<home>/refinery/<rig>/`. Merge and squash candidates are
made in its object store alone (`git merge-tree`, `git commit-tree`); a
rebase, or a conflict resolved with `-X ours|theirs`, in the `build`
worktree; the required checks run in the `check` worktree.

Candidates are deterministic. A `Recipe` pins the target's commit and each
branch's commit, and commits are made with a fixed identity and the
recipe's own timestamp, so the same recipe gives the same commit on any
worker at any attempt. That is what makes every activity here idempotent:
a check or a landing whose clone was lost rebuilds the very commit that was
tested, and a landing retried after its push went through recognises its
commit on the remote instead of pushing again.

The remote is only ever moved by a fast-forward push of a tested commit;
a push refused because the target moved is reported (`TargetMoved`), never
forced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from git import GitCommandError, Repo, SymbolicReference
from git.cmd import Git
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.git import open_checkout
from activities.gitlocks import clear_stale_locks, file_lock, undo_interrupted_add
from activities.heartbeats import heartbeating
from activities.tmux import tail_of, terminate_tree
from contracts import merges as contract
from contracts.merges import Candidate, CheckRequest, Landed, Part, PrepareRequest, Recipe
from crds.refinery import CheckResult, check_argv
from crds.rig import RigSpec

IDENTITY = {"name": "Gas Town Refinery", "email": "refinery@gastown.invalid"}
REMOTE_TIMEOUT = 120  # seconds a fetch or push may take
# Settings that would make a commit depend on the machine it is made on: off.
_FIXED_CONFIG = {
    "commit.gpgsign": "false",
    "rerere.enabled": "false",
    "core.autocrlf": "false",
    "merge.renames": "true",
}


class MergeActivities(contract.MergeActivities):
    def __init__(self, home: Path) -> None:
        self.home = home

    def _root(self, rig: str) -> Path:
        return self.home / "refinery" / rig

    @activity.defn(name=contract.PREPARE)
    @heartbeating
    async def prepare(self, request: PrepareRequest) -> Candidate:
        return await asyncio.to_thread(self._prepare, request)

    def _prepare(self, request: PrepareRequest) -> Candidate:
        recipe = request.recipe.model_copy(update={"remote": remote_of(request.rig)})
        branches = [part.branch for part in recipe.parts]
        with self._clone(recipe.rig, recipe.remote, lock="worktrees") as repo:
            build = self._root(recipe.rig) / "build"
            if request.on is not None:
                base: str | None = _ensure_tip(repo, build, request.on)
                heads = _fetch_branches(repo, branches)
            else:
                heads = _fetch_branches(repo, [recipe.target, *branches])
                base = heads.get(recipe.target)
            if base is None:
                raise ApplicationError(
                    f"targetBranch {recipe.target} does not exist on {recipe.remote}",
                    type="TargetMissing",
                    non_retryable=True,
                )
            parts = [part.model_copy(update={"head": heads.get(part.branch)}) for part in recipe.parts]
            return _build(repo, build, recipe.model_copy(update={"base": base, "parts": parts}))

    @activity.defn(name=contract.CHECK)
    @heartbeating
    async def check(self, request: CheckRequest) -> list[CheckResult]:
        root = self._root(request.candidate.recipe.rig)
        worktree = await asyncio.to_thread(self._checkout, request.candidate, root / "check")
        results: list[CheckResult] = []
        for command in request.commands:
            result = await _run_check(command, worktree, root / "check.pid", root / "check.log", request)
            results.append(result)
            if not result.passed:
                break
        return results

    def _checkout(self, candidate: Candidate, worktree: Path) -> Path:
        with self._clone(candidate.recipe.rig, candidate.recipe.remote, lock="worktrees") as repo:
            tip = _ensure_tip(repo, self._root(candidate.recipe.rig) / "build", candidate)
            _reset_worktree(repo, worktree, tip, scrub=True)
        return worktree

    @activity.defn(name=contract.LAND)
    @heartbeating
    async def land(self, candidate: Candidate) -> Landed:
        return await asyncio.to_thread(self._land, candidate)

    def _land(self, candidate: Candidate) -> Landed:
        recipe, tip = candidate.recipe, candidate.tip
        assert tip is not None and recipe.base is not None
        target = recipe.target
        heads = {
            part.branch: part.head for part in recipe.parts if part.branch in candidate.stacked and part.head
        }
        with self._clone(recipe.rig, recipe.remote) as repo:
            # One atomic push, each ref leased to what the candidate was made from: the target moves
            # from its base to the tip (a fast-forward) and the landed branches go, or nothing happens.
            update = f"{tip}:refs/heads/{target}"
            main_lease = f"--force-with-lease=refs/heads/{target}:{recipe.base}"
            if not _push(repo, [main_lease, update, *_deletions(heads, heads)], atomic=True):
                remote = _remote_heads(repo, [target, *heads])
                if remote.get(target) == recipe.base:  # not landed: the clone lost the tip, or a branch moved
                    with file_lock(self._root(recipe.rig) / "worktrees.lock"):
                        _ensure_tip(repo, self._root(recipe.rig) / "build", candidate)
                    _push(repo, [main_lease, update, *_deletions(heads, remote)], atomic=True)
            # Verified, not assumed: what the remote shows now (our push, or an earlier attempt's).
            after = _remote_heads(repo, [target, *heads])
            if not _landed(repo, tip, after.get(target)):
                now = (after.get(target) or "nothing")[:12]
                raise ApplicationError(
                    f"{target} moved on the remote ({recipe.base[:12]} -> {now}) since the candidate was made",
                    type="TargetMoved",
                    non_retryable=True,
                )
            moved = {branch for branch, head in heads.items() if after.get(branch) not in (None, head)}
            leftover = _deletions(heads, after)  # landed by an earlier attempt that did not delete them
            if leftover:
                _push(repo, leftover, atomic=False)
            return Landed(commit=tip, remote_head=after[target], pruned=sorted(set(heads) - moved))

    @contextlib.contextmanager
    def _clone(self, rig: str, remote: str, lock: str | None = None) -> Iterator[Repo]:
        """The rig's bare clone (made on first use).

        `lock` names a file lock held meanwhile, against other activities and processes on this
        machine: "worktrees" for work in the build and check worktrees. A landing takes none (it
        pushes, and may run while the next candidate is made), but for rebuilding a lost tip.
        """
        root = self._root(rig)
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / "setup.lock"):
            repo = _bare_clone(root / "repo.git", remote)
        with file_lock(root / f"{lock}.lock") if lock else contextlib.nullcontext():
            clear_stale_locks(root / "repo.git")
            yield repo


def _bare_clone(path: Path, remote: str) -> Repo:
    if not (path / "HEAD").exists():
        Repo.init(path, bare=True)
    repo = Repo(path)
    if "origin" not in [each.name for each in repo.remotes]:
        repo.create_remote("origin", remote)
    elif repo.remotes.origin.url != remote:
        repo.remotes.origin.set_url(remote)
    return repo


def remote_of(rig: RigSpec) -> str:
    """Where the rig's branches live: its gitURL, else its checkout's origin; RigHasNoRemote if neither."""
    if rig.git_url:
        return rig.git_url
    if rig.local_path:
        repo = open_checkout(rig)
        if "origin" in [remote.name for remote in repo.remotes]:
            return str(repo.remotes.origin.url)
    raise ApplicationError(
        "the rig has no remote to land on: set its spec.gitURL, or give its checkout an origin",
        type="RigHasNoRemote",
        non_retryable=True,
    )


def _environment(when: datetime) -> dict[str, str]:
    """Fixed identity, dates and settings: the same inputs make the same commits anywhere."""
    stamp = when.isoformat()
    environment = {
        "GIT_AUTHOR_NAME": IDENTITY["name"],
        "GIT_AUTHOR_EMAIL": IDENTITY["email"],
        "GIT_COMMITTER_NAME": IDENTITY["name"],
        "GIT_COMMITTER_EMAIL": IDENTITY["email"],
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_COUNT": str(len(_FIXED_CONFIG)),
    }
    for index, (key, value) in enumerate(_FIXED_CONFIG.items()):
        environment[f"GIT_CONFIG_KEY_{index}"] = key
        environment[f"GIT_CONFIG_VALUE_{index}"] = value
    return environment


def _remote_heads(repo: Repo, branches: list[str]) -> dict[str, str]:
    """branch -> commit on the remote, for those of `branches` that exist there."""
    try:
        listing = str(
            repo.git.ls_remote(
                "--heads",
                "origin",
                *branches,
                kill_after_timeout=REMOTE_TIMEOUT,
                env={"GIT_TERMINAL_PROMPT": "0"},
            )
        )
    except GitCommandError as error:
        raise ApplicationError(
            f"the rig's remote does not answer: {str(error.stderr).strip()[-300:]}", type="RemoteUnreachable"
        ) from None
    heads = {}
    for line in listing.splitlines():
        sha, ref = line.split("\t", 1)
        heads[ref.removeprefix("refs/heads/")] = sha
    return {branch: heads[branch] for branch in branches if branch in heads}


def _fetch_branches(repo: Repo, branches: list[str]) -> dict[str, str]:
    """Fetch the branches that exist on the remote; branch -> its commit. One fetch when all exist."""
    wanted = list(dict.fromkeys(branches))
    try:
        _fetch_refs(repo, wanted)
    except GitCommandError:  # some branch is not there: ask which are, fetch those
        wanted = list(_remote_heads(repo, wanted))
        _fetch_refs(repo, wanted)
    return {b: SymbolicReference.dereference_recursive(repo, f"refs/remotes/origin/{b}") for b in wanted}


def _fetch_refs(repo: Repo, branches: list[str]) -> None:
    refspecs = [f"+refs/heads/{b}:refs/remotes/origin/{b}" for b in branches]
    repo.git.fetch("-q", "--no-tags", "origin", *refspecs, kill_after_timeout=REMOTE_TIMEOUT)


def _has(repo: Repo, *shas: str) -> bool:
    """The clone holds every one of these commits."""
    try:
        repo.git.rev_parse("-q", *(f"{sha}^{{commit}}" for sha in shas))
        return True
    except GitCommandError:
        return False


def _fetch(repo: Repo, shas: list[str]) -> None:
    """Bring the commits into the clone (by id: a branch may have moved since it was pinned)."""
    if shas and not _has(repo, *shas):
        repo.git.fetch("--no-tags", "origin", *sorted(set(shas)), kill_after_timeout=REMOTE_TIMEOUT)


def _deletions(heads: dict[str, str], remote: dict[str, str]) -> list[str]:
    """Push arguments deleting each landed branch, only while it is still at the commit landed."""
    still = [branch for branch, head in heads.items() if remote.get(branch) == head]
    return [f"--force-with-lease=refs/heads/{b}:{heads[b]}" for b in still] + [
        f":refs/heads/{b}" for b in still
    ]


def _push(repo: Repo, arguments: list[str], atomic: bool) -> bool:
    """Push to origin; False if the remote refused (a lease did not hold, or a ref was not a fast-forward)."""
    try:
        repo.git.push(
            *(["--atomic"] if atomic else []), "origin", *arguments, kill_after_timeout=REMOTE_TIMEOUT
        )
    except GitCommandError:
        return False
    return True


def _landed(repo: Repo, tip: str, remote_head: str | None) -> bool:
    """The remote's target holds `tip` (it is the tip, or something built on it)."""
    if remote_head is None:
        return False
    if remote_head == tip:
        return True
    with contextlib.suppress(GitCommandError):
        _fetch(repo, [remote_head])
        repo.git.merge_base("--is-ancestor", tip, remote_head)
        return True
    return False


def _reset_worktree(repo: Repo, worktree: Path, commit: str, scrub: bool = False) -> None:
    """A clean worktree at `commit` (made, or emptied of whatever an earlier attempt left)."""
    undo_interrupted_add(Path(repo.common_dir), worktree)
    if (worktree / ".git").exists():
        tree = Repo(worktree)
        state = Path(tree.git_dir)
        interrupted = any((state / name).exists() for name in ("MERGE_HEAD", "rebase-merge", "rebase-apply"))
        if interrupted:
            for abort in ("merge", "rebase"):  # left open by an attempt that was cut short
                with contextlib.suppress(GitCommandError):
                    tree.git.execute(["git", abort, "--abort"])
        tree.git.checkout("-q", "-f", "--detach", commit)
        if interrupted or scrub:  # untracked leftovers: what a cut-short merge or any check may leave
            tree.git.clean("-ffdxq")
    else:
        repo.git.worktree("prune")
        repo.git.worktree("add", "--detach", str(worktree), commit)


def _head(tree: Repo) -> str:
    """The worktree's HEAD commit, read from its files (no git process)."""
    return SymbolicReference.dereference_recursive(tree, "HEAD")


def _build(repo: Repo, worktree: Path, recipe: Recipe) -> Candidate:
    """The candidate of a pinned recipe.

    merge and squash with manual conflict resolution are made in the object store alone
    (`git merge-tree`, then `git commit-tree`): no files are written. A rebase, or `-X ours` /
    `-X theirs` (which this git's merge-tree lacks), is made in the build worktree.
    """
    assert recipe.base is not None
    candidate = Candidate(recipe=recipe)
    in_store = recipe.resolution == "manual" and recipe.strategy != "rebase"
    tree: Repo | None = None
    if not in_store:
        _reset_worktree(repo, worktree, recipe.base)
        tree = Repo(worktree)
    environment = _environment(recipe.when)
    current = recipe.base
    for part in recipe.parts:
        if part.head is None:
            candidate.missing.append(part.branch)
            continue
        if tree is None:
            files, after = _merge_in_store(repo, recipe, part, current, environment)
        else:
            files = _apply(tree.git, recipe, part, current, environment)
            after = _head(tree)
            if files is not None:
                tree.git.checkout("-q", "--detach", current)
        if files is not None:
            candidate.conflicts[part.branch] = files
        elif after == current:  # nothing of it was new: the target holds it already
            candidate.already.append(part.branch)
        else:
            current = after
            candidate.stacked.append(part.branch)
    candidate.tip = current if candidate.stacked else None
    return candidate


def _merge_in_store(
    repo: Repo, recipe: Recipe, part: Part, current: str, environment: dict[str, str]
) -> tuple[list[str] | None, str]:
    """merge or squash of one branch onto `current` without a worktree: (conflicting files, new commit)."""
    head = part.head
    assert head is not None
    status, out, _ = repo.git.merge_tree(
        "--write-tree",
        "--name-only",
        "--no-messages",
        current,
        head,
        with_extended_output=True,
        with_exceptions=False,
    )
    lines = str(out).splitlines()
    if status == 1:
        return sorted(lines[1:]) or ["(git could not apply it; no single file is in conflict)"], current
    if status != 0:
        raise GitCommandError(["git", "merge-tree", current, head], status)
    if lines[0] == repo.git.rev_parse(f"{current}^{{tree}}"):
        return None, current  # nothing of it was new
    if recipe.strategy == "merge":
        message = _message(recipe, part, f"Merge {part.branch} into {recipe.target}")
        parents = ["-p", current, "-p", head]
    else:
        message = _message(recipe, part, _squash_subject(repo.git, part, current))
        parents = ["-p", current]
        name, email = str(repo.git.log("-1", "--format=%an%x00%ae", head)).split("\0")
        environment = {**environment, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email}
    return None, str(repo.git.commit_tree(lines[0], *parents, "-m", message, env=environment))


def _squash_subject(git: Git, part: Part, current: str) -> str:
    """A squash commit's message body: the bead, the polecat, and the subjects of the commits squashed."""
    subjects = git.log("--reverse", "--format=- %s", f"{current}..{part.head}")
    what = part.bead_id or part.branch
    by = f"polecat {part.polecat}" if part.polecat else part.branch
    return f"{what}: squashed work of {by}\n\n{subjects}"


def _apply(
    git: Git, recipe: Recipe, part: Part, current: str, environment: dict[str, str]
) -> list[str] | None:
    """Add one branch on top of `current` with the recipe's strategy; the conflicting files if it cannot.

    conflictResolution names the side that wins a conflict: `theirs` the polecat's branch, `ours`
    the target. git's `-X` means the same in all three strategies here, because a rebase replays
    the branch onto the target (git's "ours" during a rebase is the target).
    """
    side = [] if recipe.resolution == "manual" else ["-X", recipe.resolution]
    head = part.head
    assert head is not None
    try:
        if recipe.strategy == "merge":
            message = _message(recipe, part, f"Merge {part.branch} into {recipe.target}")
            git.merge("--no-ff", "--no-edit", *side, "-m", message, head, env=environment)
        elif recipe.strategy == "squash":
            git.merge("--squash", *side, head, env=environment)
            if _nothing_staged(git):
                return None  # its changes are all in the target already
            author = git.log("-1", "--format=%an <%ae>", head)
            message = _message(recipe, part, _squash_subject(git, part, current))
            git.commit("-q", f"--author={author}", "-m", message, env=environment)
        else:  # rebase: the branch's commits replayed on the target, to be fast-forwarded
            git.checkout("-q", "--detach", head)
            git.rebase("-q", *side, current, env=environment)
    except GitCommandError:
        files = git.diff("--name-only", "--diff-filter=U").splitlines()
        for abort in ("merge", "rebase"):
            with contextlib.suppress(GitCommandError):
                git.execute(["git", abort, "--abort"])
        git.reset("--hard", "-q")
        return sorted(files) or ["(git could not apply it; no single file is in conflict)"]
    return None


def _nothing_staged(git: Git) -> bool:
    try:
        git.diff("--cached", "--quiet")
        return True
    except GitCommandError:
        return False


def _message(recipe: Recipe, part: Part, subject: str) -> str:
    """A commit message naming what landed: the bead, the polecat, the branch and the refinery."""
    trailers = [f"Branch: {part.branch}"]
    if part.bead_id:
        trailers.append(f"Bead: {part.bead_id}")
    if part.polecat:
        trailers.append(f"Polecat: {part.namespace or 'default'}/{part.polecat}")
    trailers.append(f"Refinery: {recipe.refinery}")
    return f"{subject}\n\n" + "\n".join(trailers)


def _ensure_tip(repo: Repo, worktree: Path, candidate: Candidate) -> str:
    """The candidate's tip in the clone, rebuilt from its recipe if the clone lost it (the same commit)."""
    tip = candidate.tip
    assert tip is not None and candidate.recipe.base is not None
    if _has(repo, tip):
        return tip
    heads = [part.head for part in candidate.recipe.parts if part.head]
    try:
        _fetch(repo, [candidate.recipe.base, *heads])
    except GitCommandError:
        raise ApplicationError(
            "the candidate's commits are gone from the remote", type="CandidateLost", non_retryable=True
        ) from None
    rebuilt = _build(repo, worktree, candidate.recipe)
    if rebuilt.tip != tip:
        raise ApplicationError(
            f"rebuilding the candidate gave {rebuilt.tip}, not {tip}",
            type="CandidateLost",
            non_retryable=True,
        )
    return tip


async def _run_check(
    command: str, worktree: Path, pid_file: Path, log: Path, request: CheckRequest
) -> CheckResult:
    """One check, in its own process group (so a retry after a crash can stop the one left running)."""
    _stop_leftover(pid_file)
    recipe = request.candidate.recipe
    environment = {
        **os.environ,
        "GT_RIG": recipe.rig,
        "GT_TARGET": recipe.target,
        "GT_BRANCHES": " ".join(request.candidate.stacked),
        "GT_COMMIT": request.candidate.tip or "",
    }
    with log.open("wb") as output:
        try:
            process = await asyncio.create_subprocess_exec(
                *check_argv(command),
                cwd=worktree,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        except OSError as error:
            return CheckResult(command=command, passed=False, output=f"cannot run: {error}")
    pid_file.write_text(str(process.pid))
    try:
        code = await asyncio.wait_for(process.wait(), request.timeout.total_seconds())
    except TimeoutError:
        await asyncio.to_thread(terminate_tree, process.pid)
        return CheckResult(
            command=command, passed=False, output=f"{tail_of(log)}\n(stopped after {request.timeout})".strip()
        )
    except asyncio.CancelledError:
        await asyncio.to_thread(terminate_tree, process.pid)
        raise
    finally:
        pid_file.unlink(missing_ok=True)
    return CheckResult(command=command, passed=code == 0, exit_code=code, output=tail_of(log))


def _stop_leftover(pid_file: Path) -> None:
    """A check an earlier attempt started and a crash left running: stopped before this one starts."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink()
