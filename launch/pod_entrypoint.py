"""The polecat image's entrypoint: `clone` (init container) and `run` (agent container).

    python3 -m launch.pod_entrypoint clone --repository URL --base main --branch polecat/x --into /workspace/repo
    python3 -m launch.pod_entrypoint run --branch polecat/x -- claude --print ... PROMPT

Every command is an argv list: no shell sees the repository URL, the branch or
the task. The git key is copied from its read-only secret volume to a 0600
file of our own, because ssh refuses a key that the group can read (the
kubelet makes secret files group-readable for fsGroup).

`run` exits with the agent's exit code; on success it first pushes the work
branch and writes {"branch", "commit"} to the termination message, which the
worker reads from the pod's status. With `--require-commit` (the named agents,
whose exit status proves nothing) an exit 0 that left no commit is NO_COMMITS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Kubernetes reads a container's termination message from this file.
TERMINATION_LOG = "/dev/termination-log"
PUSH_FAILED = 90  # distinct from any agent's own exit codes in practice
NO_COMMITS = 91  # the agent exited 0 but left nothing to merge


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
    # PWD as a shell would set it: opencode works in $PWD, not in its working directory.
    env = {**os.environ, **ssh_environment(git_secret), "PWD": os.getcwd()}
    prompt = env.pop("GT_PROMPT", "")
    prompt_file = Path(env.get("HOME", "/tmp")) / "gastown-prompt.md"
    prompt_file.write_text(prompt)
    env["GT_PROMPT_FILE"] = str(prompt_file)
    files: dict[str, str] = json.loads(env.pop("GT_AGENT_FILES", "{}"))
    if agent_dir is not None:
        Path(agent_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, content in files.items():
            (Path(agent_dir) / Path(name).name).write_text(content)
    if claude_creds is not None:
        target = Path(env.get("HOME", "/tmp")) / ".claude"
        target.mkdir(parents=True, exist_ok=True)
        for item in Path(claude_creds).iterdir():
            if item.is_file():
                shutil.copyfile(item, target / item.name)
    code = subprocess.run(argv, env=env).returncode
    if code != 0:
        return code
    if require_commit:
        counted = subprocess.run(own_commits(branch), env=env, capture_output=True, text=True)
        if counted.stdout.strip() == "0":
            print(f"gastown: the agent exited 0 but left no commit on {branch}", file=sys.stderr)
            return NO_COMMITS
    pushed = subprocess.run(["git", "push", "origin", f"HEAD:refs/heads/{branch}"], env=env)
    if pushed.returncode != 0:
        print(f"gastown: push of {branch} failed", file=sys.stderr)
        return PUSH_FAILED
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], env=env, capture_output=True, text=True
    ).stdout.strip()
    message = json.dumps({"branch": branch, "commit": commit})
    Path(env.get("GT_TERMINATION_LOG", TERMINATION_LOG)).write_text(message)
    return 0


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
