"""What a killed git leaves behind in a repository, found and undone once no git can be at work there.

git guards each file it rewrites with a `<file>.lock` it creates exclusively
and renames into place when done. A git killed midway (its worker SIGKILLed,
its machine lost) leaves the lock behind, and every later command touching
that file fails with "Unable to create '....lock': File exists" until
someone removes it: git leaves that to a person who knows no git is running.
We can know it: no live git process works in the repository's git directory
or in any of its work trees.

`git worktree add` likewise marks the worktree it is making with a `locked`
file reading "initializing", removed once the worktree is checked out. Left
behind, it makes a half-made worktree that `git worktree prune` keeps and
`git worktree add` refuses to replace. Nothing has worked in such a
worktree yet, so it is removed, to be made again.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
from temporalio.exceptions import ApplicationError

log = logging.getLogger(__name__)

# Where git keeps the locks of what our activities change: refs, packed refs, config, shallow,
# and each worktree's own index and HEAD. A non-bare checkout's own index.lock is its user's.
LOCK_PATTERNS = ("packed-refs.lock", "config.lock", "shallow.lock", "refs/**/*.lock", "worktrees/*/*.lock")
INITIALIZING = "initializing"  # the reason `git worktree add` locks a worktree while it makes it


def clear_stale_locks(git_dir: Path) -> None:
    """Remove the lock files under `git_dir` (a repository's common directory) no running git can hold."""
    found = {path: path.stat().st_ino for pattern in LOCK_PATTERNS for path in git_dir.glob(pattern)}
    if not found or git_running(git_dir):
        return
    for path, inode in found.items():
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino == inode:  # the very file seen before no git was found running
                path.unlink()
                log.warning("removed %s, left by a git that was killed", path)


def undo_interrupted_add(git_dir: Path, worktree: Path) -> None:
    """Remove the worktree at `worktree` if a `git worktree add` was cut short making it.

    Raises a retryable WorktreeBusy while a git still works in the repository (it may be that add).
    """
    target = (worktree / ".git").resolve()
    # git names a worktree's admin directory after the worktree's own name (a number added on a
    # clash), and a finished add leaves no `locked` file: at hundreds of worktrees, reading every
    # admin's `gitdir` for each new one was most of the time it took to make one.
    for admin in (git_dir / "worktrees").glob(f"{glob.escape(worktree.name)}*"):
        try:
            interrupted = (admin / "locked").read_text().strip() == INITIALIZING
            made = interrupted and Path((admin / "gitdir").read_text().strip()).resolve() == target
        except (FileNotFoundError, NotADirectoryError):
            continue
        if made:
            if git_running(git_dir):
                raise ApplicationError(
                    f"{worktree} is being made by a git still running", type="WorktreeBusy"
                )
            shutil.rmtree(admin)
            shutil.rmtree(worktree, ignore_errors=True)
            log.warning("removed %s, half made by a git that was killed", worktree)


def git_running(git_dir: Path) -> bool:
    """Whether a live git process works in the repository: its git directory, checkout or worktrees.

    `git cat-file --batch` readers (GitPython keeps them open beside each Repo) take no locks.
    """
    dirs = _work_dirs(git_dir)
    for process in psutil.process_iter(["name", "cwd", "cmdline"]):
        name, cwd, argv = process.info["name"] or "", process.info["cwd"], process.info["cmdline"] or []
        if not name.startswith("git") or not cwd or argv[1:2] == ["cat-file"]:
            continue
        if any(d == Path(cwd) or d in Path(cwd).parents for d in dirs):
            return True
    return False


def _admins(git_dir: Path) -> list[Path]:
    return [admin for admin in (git_dir / "worktrees").glob("*") if admin.is_dir()]


def _work_dirs(git_dir: Path) -> list[Path]:
    """The git directory, the checkout it belongs to (if any) and every worktree it knows."""
    dirs = [git_dir.resolve()]
    if git_dir.name == ".git":
        dirs.append(git_dir.parent.resolve())
    for admin in _admins(git_dir):
        with contextlib.suppress(OSError):  # its `gitdir` names the worktree's .git file
            dirs.append(Path((admin / "gitdir").read_text().strip()).parent.resolve())
    return dirs


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Held by one thread of one process at a time, on this machine: two workers of one host
    share its repositories."""
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
