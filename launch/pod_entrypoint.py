"""The polecat image's entrypoint: `clone` (init container) and `run` (agent container).

    python3 -m launch.pod_entrypoint clone --repository URL --base main --branch polecat/x --into /workspace/repo
    python3 -m launch.pod_entrypoint run --branch polecat/x -- claude --print ... PROMPT

Every command is an argv list: no shell sees the repository URL, the branch or
the task. The git key is copied from its read-only secret volume to a 0600
file of our own, because ssh refuses a key that the group can read (the
kubelet makes secret files group-readable for fsGroup).

`run` runs the agent through a model gateway of the pod's own
(`launch.pod_gateway`: usage, budget, limits; the key stays out of the
agent's reach) and exits with the agent's exit code; on success it first
pushes the work branch. With `--require-commit` (the named agents, whose exit
status proves nothing) an exit 0 that left no commit is NO_COMMITS. An agent
stopped for its budget (OVER_BUDGET) or a long limit (RATE_LIMITED) has its
commits so far pushed. Either way the termination message is a `PodReport`
(branch, commit, usage, why it stopped, the output's tail), which the worker
reads from the pod's status.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from launch.unreadable import make_unreadable

if TYPE_CHECKING:
    from launch.pod_gateway import PodReport

# Kubernetes reads a container's termination message from this file.
TERMINATION_LOG = "/dev/termination-log"
PUSH_FAILED = 90  # distinct from any agent's own exit codes in practice
NO_COMMITS = 91  # the agent exited 0 but left nothing to merge
OVER_BUDGET = 92  # the agent was stopped: its polecat's budget is spent
RATE_LIMITED = 93  # the agent was stopped: its provider's limit is too long to hold


def own_commits(branch: str) -> list[str]:
    """The git command counting the commits only `branch` has: on no other branch, local or remote
    (a restarted polecat's earlier commits count; the base's do not)."""
    return [
        "git", "rev-list", "--count", "HEAD", "--not",
        f"--exclude={branch}", "--branches", f"--exclude=origin/{branch}", "--remotes",
    ]  # fmt: skip


def ssh_environment(git_secret: str | None) -> dict[str, str]:
    """Environment that makes git use the key of a mounted secret and its pinned known_hosts.

    Empty without a secret, or when the secret holds no key (an optional mount left empty).
    """
    if git_secret is None or not (Path(git_secret) / "ssh-privatekey").exists():
        return {}
    ssh_dir = Path(os.environ.get("HOME", "/tmp")) / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ssh_dir / "id_gastown"
    shutil.copyfile(Path(git_secret) / "ssh-privatekey", key)
    key.chmod(0o600)
    known_hosts = Path(git_secret) / "known_hosts"
    checking = (
        f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes" if known_hosts.exists() else ""
    )
    return {"GIT_SSH_COMMAND": f"ssh -i {key} -o IdentitiesOnly=yes {checking}".strip()}


def clone(repository: str, base: str, branch: str, into: str, git_secret: str | None) -> int:
    """The base branch, and on it the work branch: the remote's own if an earlier attempt pushed it
    (a restarted polecat goes on from its work), else a new one."""
    env = {**os.environ, **ssh_environment(git_secret)}
    cloned = subprocess.run(["git", "clone", "--depth=1", "--branch", base, "--", repository, into], env=env)
    if cloned.returncode != 0:
        return cloned.returncode
    found = subprocess.run(
        ["git", "-C", into, "ls-remote", "--exit-code", "--heads", "origin", branch], env=env
    )
    if found.returncode == 2:  # no such branch on the remote
        steps = [["git", "-C", into, "checkout", "-b", branch]]
    elif found.returncode == 0:
        steps = [
            ["git", "-C", into, "fetch", "--depth=1", "origin", f"refs/heads/{branch}:refs/heads/{branch}"],
            ["git", "-C", into, "checkout", branch],
        ]
    else:
        return found.returncode
    for step in steps:
        done = subprocess.run(step, env=env)
        if done.returncode != 0:
            return done.returncode
    return 0


def run(
    branch: str,
    argv: list[str],
    git_secret: str | None,
    claude_creds: str | None,
    agent_dir: str | None = None,
    require_commit: bool = False,
) -> int:
    # The gateway's imports (asyncio, aiohttp, pydantic) cost ~0.35 s; the init container's clone
    # needs none of them.
    import asyncio

    from launch.pod_gateway import PodReport, run_agent, settings_from

    # PWD as a shell would set it: opencode works in $PWD, not in its working directory.
    env = {**os.environ, **ssh_environment(git_secret), "PWD": os.getcwd()}
    settings, key = settings_from(env)
    if key:
        make_unreadable()  # the key in its environment stays out of the agent's reach
    home = Path(env.get("HOME", "/tmp"))
    prompt_file = home / "gastown-prompt.md"
    prompt_file.write_text(env.pop("GT_PROMPT", ""))
    env["GT_PROMPT_FILE"] = str(prompt_file)
    files: dict[str, str] = json.loads(env.pop("GT_AGENT_FILES", "{}"))
    if claude_creds is not None:
        target = home / ".claude"
        target.mkdir(parents=True, exist_ok=True)
        for item in Path(claude_creds).iterdir():
            if item.is_file():
                shutil.copyfile(item, target / item.name)
    directory = Path(agent_dir) if agent_dir is not None else None
    done = asyncio.run(run_agent(argv, env, files, directory, settings, home, key))
    report = PodReport(usage=done.usage, over_budget=done.over_budget, limit=done.limit, tail=done.tail)
    code = done.exit_code
    if done.stopped:  # its budget spent, or a long limit: its commits so far are kept on the remote
        code = OVER_BUDGET if done.over_budget else RATE_LIMITED
        if _has_commits(branch, env):
            _push(branch, env, report)
    elif code == 0:
        if require_commit and not _has_commits(branch, env):
            _say(report, f"gastown: the agent exited 0 but left no commit on {branch}")
            code = NO_COMMITS
        elif not _push(branch, env, report):
            _say(report, f"gastown: push of {branch} failed")
            code = PUSH_FAILED
    Path(env.get("GT_TERMINATION_LOG", TERMINATION_LOG)).write_text(report.message())
    return code


def _say(report: PodReport, words: str) -> None:
    """Why the pod fails, after the agent's own output: in its log and its termination message."""
    print(words, file=sys.stderr)
    report.tail = f"{report.tail.rstrip()}\n{words}"


def _has_commits(branch: str, env: dict[str, str]) -> bool:
    counted = subprocess.run(own_commits(branch), env=env, capture_output=True, text=True)
    return counted.stdout.strip() not in ("", "0")


def _push(branch: str, env: dict[str, str], report: PodReport) -> bool:
    """The work branch to the remote, and where it is into `report`; False if the push failed."""
    pushed = subprocess.run(["git", "push", "origin", f"HEAD:refs/heads/{branch}"], env=env)
    if pushed.returncode != 0:
        return False
    head = subprocess.run(["git", "rev-parse", "HEAD"], env=env, capture_output=True, text=True)
    report.branch, report.commit = branch, head.stdout.strip()
    return True


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pod_entrypoint")
    commands = parser.add_subparsers(dest="command", required=True)
    clone_parser = commands.add_parser("clone")
    clone_parser.add_argument("--repository", required=True)
    clone_parser.add_argument("--base", required=True)
    clone_parser.add_argument("--branch", required=True)
    clone_parser.add_argument("--into", required=True)
    clone_parser.add_argument("--git-secret")
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--branch", required=True)
    run_parser.add_argument("--git-secret")
    run_parser.add_argument("--claude-creds")
    run_parser.add_argument("--agent-dir")
    run_parser.add_argument("--require-commit", action="store_true")
    run_parser.add_argument("argv", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    if options.command == "clone":
        return clone(options.repository, options.base, options.branch, options.into, options.git_secret)
    argv = options.argv[1:] if options.argv[:1] == ["--"] else options.argv
    return run(
        options.branch,
        argv,
        options.git_secret,
        options.claude_creds,
        options.agent_dir,
        options.require_commit,
    )


if __name__ == "__main__":
    sys.exit(main())
