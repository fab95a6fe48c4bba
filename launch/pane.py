"""The first process of an agent's tmux pane: it takes on the worker's environment, then becomes the agent.

    python -I pane.py ENV_FILE PROGRAM [ARG...]

A pane's process would otherwise inherit the tmux *server's* environment,
captured when that server started (perhaps by an older worker, with an old
key). So the worker writes the agent's whole environment to ENV_FILE (a JSON
object, mode 0600 in the polecat's private directory); this reads it,
deletes it and execs PROGRAM with exactly that environment. Keys thus never
appear on a command line (tmux's included) and stay on disk only until the
agent starts. The pid stays the pane's, so the watcher's pidfd is the agent's.

Standard library only, run by path: it is not imported from the project.
"""

from __future__ import annotations

import json
import os
import sys

# What tmux sets for the pane itself, kept from the pane's environment.
FROM_THE_PANE = ("TERM", "COLORTERM", "TMUX", "TMUX_PANE")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: pane.py ENV_FILE PROGRAM [ARG...]", file=sys.stderr)
        return 2
    env_file, command = argv[1], argv[2:]
    try:
        with open(env_file, encoding="utf-8") as stream:
            env: dict[str, str] = json.load(stream)
        os.unlink(env_file)
    except (OSError, ValueError) as error:
        print(f"gastown: cannot read the agent's environment {env_file}: {error}", file=sys.stderr)
        return 126
    env.update({name: os.environ[name] for name in FROM_THE_PANE if name in os.environ})
    try:
        os.execvpe(command[0], command, env)
    except OSError as error:
        print(f"gastown: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        return 127  # as a shell (and env) report a program not found


if __name__ == "__main__":
    sys.exit(main(sys.argv))
