#!/usr/bin/env python3
"""A scripted `custom` agent: does what its flags say, like a tiny polecat.

Use it as `agentConfig.command: [python3, examples/agents/scripted_agent.py, ...]`.
It reads the task from $GT_PROMPT_FILE (as every custom agent may), and can:

  --commit FILE=TEXT   write FILE in the worktree and commit it (repeatable)
  --say TEXT           print a line of progress (repeatable, in order)
  --pause SECONDS      pause between steps, so progress can be watched
  --wait-for PATH      block until PATH exists (lets a test decide when it ends)
  --child-pid PATH     start a child process and write its pid to PATH
  --runs PATH          append one line per start to PATH (counts restarts)
  --environment PATH   write the environment it was started with to PATH, as JSON
  --stall-runs N       on its first N starts (counted in --runs), go quiet for good at the end:
                       a hung agent, for the Witness to find
  --stall-if BEAD=N    the same, only when working BEAD (repeatable)
  --fail-runs N        on its first N starts (counted in --runs), exit 1 at the end
  --spans PATH         append "start|end <bead> <time>" lines to PATH (how many ran at once)
  --exclusive PATH     hold a lock on PATH while it runs; if another agent holds it, append a line
                       to PATH.overlaps and exit 75 (two agents on one bead at once)
  --usage MODEL=IN,OUT report a model request of IN input and OUT output tokens, as a custom agent
                       does: a JSON line appended to $GT_USAGE_FILE (repeatable)
  --exit CODE          exit with CODE at the end (default 0)
  --exit-if BEAD=CODE  exit with CODE instead when working BEAD (repeatable)

`{bead}` in --commit, --say, --runs and --exclusive stands for the bead being worked ($GT_ISSUE), so one
command line (a convoy's polecatTemplate) can give each bead its own file and run count; `{run}` in
--commit for this start's number (counted in --runs; 1 without it), so each run commits anew.

No shell is used anywhere: git is called with an argv list.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commit", action="append", default=[])
    parser.add_argument("--say", action="append", default=[])
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--wait-for")
    parser.add_argument("--child-pid")
    parser.add_argument("--runs")
    parser.add_argument("--environment")
    parser.add_argument("--stall-runs", type=int, default=0)
    parser.add_argument("--stall-if", action="append", default=[])
    parser.add_argument("--fail-runs", type=int, default=0)
    parser.add_argument("--spans")
    parser.add_argument("--exclusive")
    parser.add_argument("--usage", action="append", default=[])
    parser.add_argument("--exit", type=int, default=0)
    parser.add_argument("--exit-if", action="append", default=[])
    args = parser.parse_args()
    bead = os.environ.get("GT_ISSUE") or "-"
    exits = {key: int(code) for key, _, code in (item.partition("=") for item in args.exit_if)}
    code: int = exits.get(bead, args.exit)
    stalls = {key: int(runs) for key, _, runs in (item.partition("=") for item in args.stall_if)}
    stall_runs: int = stalls.get(bead, args.stall_runs)
    args.commit = [item.replace("{bead}", bead) for item in args.commit]
    args.say = [item.replace("{bead}", bead) for item in args.say]
    args.runs = args.runs.replace("{bead}", bead) if args.runs else None
    if args.exclusive:
        lock = open(args.exclusive.replace("{bead}", bead), "a")  # noqa: SIM115 (held until the process ends)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with open(lock.name + ".overlaps", "a") as overlaps:
                overlaps.write(f"{os.getpid()} found {bead} already worked\n")
            return 75
    span(args.spans, "start", bead)

    if args.environment:
        Path(args.environment).write_text(json.dumps(dict(os.environ)))
    started = 1
    if args.runs:
        with open(args.runs, "a") as runs:
            runs.write(f"{os.getpid()}\n")
        started = len(Path(args.runs).read_text().splitlines())
    args.commit = [item.replace("{run}", str(started)) for item in args.commit]
    print(f"polecat {os.environ.get('GT_POLECAT')} on {os.environ.get('GT_BRANCH')}", flush=True)
    prompt_file = os.environ.get("GT_PROMPT_FILE")
    if prompt_file:
        print("task:", Path(prompt_file).read_text(), flush=True)
    if args.child_pid:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(args.child_pid).write_text(str(child.pid))
    for line in args.say:
        print(line, flush=True)
        time.sleep(args.pause)
    for item in args.commit:
        name, _, text = item.partition("=")
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text + "\n")
        subprocess.run(["git", "add", "--", name], check=True)
        if subprocess.run(["git", "diff", "--cached", "--quiet"]).returncode == 0:
            print(f"{name} already committed", flush=True)  # an earlier run's work, kept
            continue
        subprocess.run(
            ["git", "commit", "--quiet", "-m", f"{os.environ.get('GT_ISSUE') or 'task'}: {name}"], check=True
        )
        print(f"committed {name}", flush=True)
        time.sleep(args.pause)
    for item in args.usage:
        model, _, counts = item.partition("=")
        tokens_in, _, tokens_out = counts.partition(",")
        report = {"model": model, "input_tokens": int(tokens_in), "output_tokens": int(tokens_out)}
        with open(os.environ["GT_USAGE_FILE"], "a") as usage:  # one line per request, appended
            usage.write(json.dumps(report) + "\n")
    while started <= stall_runs:
        time.sleep(3600)
    if started <= args.fail_runs:
        code = 1
    if args.wait_for:
        while not Path(args.wait_for).exists():
            time.sleep(0.005)  # fine-grained: benchmarks time the exit from the gate
    print(f"exiting with {code}", flush=True)
    span(args.spans, "end", bead)
    return code


def span(path: str | None, edge: str, bead: str) -> None:
    if path:  # one short O_APPEND write: lines of concurrent agents never interleave
        with open(path, "a") as spans:
            spans.write(f"{edge} {bead} {time.time():.6f}\n")


if __name__ == "__main__":
    sys.exit(main())
