"""The whole town for `gastown demo`: a sample rig, its beads, and every kind at work on them.

`make_town` builds, in a directory of its own, a project (a git repository
with a bare remote, a check the Refinery runs, a beads export of six open
beads) and the manifests of a Rig, a BeadStore over the export, a Refinery
that merges into main behind the check, a Witness that restarts a stuck
polecat and tells a webhook about a failed one, and a Convoy over the six
beads (autoSpawn, parallelism 3) whose polecats run the scripted custom agent.
One bead's agent goes quiet on its first run; one bead's agent fails.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from git import Actor, Repo

NAMESPACE = "demo"
RIG = "athena"
CONVOY = "sprint-1"
BEADSTORE = "athena-beads"
REFINERY = "athena-refinery"
WITNESS = "athena-witness"
AGENT = Path(__file__).resolve().parents[1] / "examples" / "agents" / "scripted_agent.py"
STALLS = "at-0003"  # goes quiet on its first run: the Witness restarts it, its work is kept
FAILS = "at-0005"  # exits 1: the Witness tells the webhook
BEADS = {
    "at-0001": "Add a greeting module",
    "at-0002": "Add a farewell module",
    "at-0003": "Add a weather report",
    "at-0004": "Add a road map",
    "at-0005": "Add a fuel gauge",
    "at-0006": "Add a water ration table",
}


@dataclass
class Town:
    checkout: Path
    remote: Path
    manifests: list[dict[str, Any]]


def _project(root: Path) -> tuple[Path, Path]:
    """The project and its bare remote: a package, the check that compiles it, the beads export."""
    remote, checkout = root / "athena.git", root / "athena"
    Repo.init(remote, bare=True, initial_branch="main")
    repo = Repo.clone_from(remote, checkout)
    (checkout / "README.md").write_text("# athena\n\nA sample rig for the Gas Town demo.\n")
    (checkout / "athena").mkdir()
    (checkout / "athena" / "__init__.py").write_text('"""The war rig\'s software."""\n')
    beads = checkout / ".beads" / "issues.jsonl"
    beads.parent.mkdir()
    beads.write_text(
        "".join(
            json.dumps(
                {
                    "id": bead,
                    "title": title,
                    "description": f"{title} to the athena package.",
                    "status": "open",
                    "priority": 2,
                    "issue_type": "task",
                    "created_at": "2026-11-27T00:00:00Z",
                }
            )
            + "\n"
            for bead, title in BEADS.items()
        )
    )
    repo.index.add(["README.md", "athena/__init__.py", ".beads/issues.jsonl"])
    author = Actor("Gas Town demo", "demo@gastown.local")
    repo.index.commit("Initial commit", author=author, committer=author)
    repo.git.branch("-M", "main")
    repo.git.push("origin", "main")
    return checkout, remote


def make_town(root: Path, webhook_url: str) -> Town:
    """The project under `root` and the manifests of the town working it."""
    checkout, remote = _project(root)
    agent = [
        sys.executable, str(AGENT),
        "--runs", str(root / "runs" / "{bead}"),
        "--say", "reading bead {bead}",
        "--pause", "0.6",
        "--say", "writing athena/{bead}.py",
        "--commit", "athena/{bead}.py=# {bead}\nDONE = True",
        "--say", "done",
        "--stall-if", f"{STALLS}=1",
        "--exit-if", f"{FAILS}=1",
    ]  # fmt: skip
    (root / "runs").mkdir()
    meta = {"namespace": NAMESPACE}
    api = "gastown.gastown.io/v1alpha1"
    manifests: list[dict[str, Any]] = [
        {
            "apiVersion": api,
            "kind": "Rig",
            "metadata": {"name": RIG},
            "spec": {
                "gitURL": str(remote),
                "localPath": str(checkout),
                "defaultBranch": "main",
                "beadsPrefix": "at",
            },
        },
        {
            "apiVersion": api,
            "kind": "BeadStore",
            "metadata": {"name": BEADSTORE, **meta},
            "spec": {
                "rigRef": RIG,
                "syncInterval": "1m",
                "source": {"type": "jsonl", "path": ".beads/issues.jsonl"},
            },
        },
        {
            "apiVersion": api,
            "kind": "Refinery",
            "metadata": {"name": REFINERY, **meta},
            "spec": {
                "rigRef": RIG,
                "targetBranch": "main",
                "strategy": "merge",
                "autoMerge": True,
                "requiredChecks": [f"{sys.executable} -m compileall -q athena"],
            },
        },
        {
            "apiVersion": api,
            "kind": "Witness",
            "metadata": {"name": WITNESS, **meta},
            "spec": {
                "rigRef": RIG,
                "checkInterval": "2s",
                "stuckThreshold": "4s",
                "startupGrace": "2s",
                "actions": {"onStuck": "restart", "onFailed": "notify"},
                "notifications": {"slack": {"webhookURL": webhook_url, "channel": "#athena"}},
            },
        },
        {
            "apiVersion": api,
            "kind": "Convoy",
            "metadata": {"name": CONVOY, **meta},
            "spec": {
                "description": "The demo's sprint: six beads, three at a time",
                "trackedBeads": list(BEADS),
                "parallelism": 3,
                "rigRef": RIG,
                "autoSpawn": True,
                "polecatTemplate": {"agent": "custom", "agentConfig": {"command": agent}},
            },
        },
    ]
    return Town(checkout, remote, manifests)
