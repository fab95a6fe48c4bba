"""A convoy of 30 beads runs to the end while its processes are killed: nothing lost, nothing done twice.

At moments drawn from a seed, the suite kills with SIGKILL the worker, the
Temporal dev server or the bridge, and starts it again after a pause drawn
from the same seed: the dev server on the same database file, the worker and
the bridge as a supervisor would (tests/faults/conftest.py).

Seeds come from GASTOWN_FAULT_SEEDS ("1 2" unless set: what CI runs);
`make faults` runs more.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from typing import Any

import pytest
from git import Repo

from tests.faults.conftest import Town
from tests.helpers import (
    convoy_manifest,
    kubectl_apply,
    max_concurrent,
    python_check,
    refinery_manifest,
    rig_manifest,
    wait_until,
)

SEEDS = [int(seed) for seed in os.environ.get("GASTOWN_FAULT_SEEDS", "1 2").split()]
BEADS = [f"ft-{number:02d}" for number in range(1, 31)]
PARALLELISM = 5
KILLS = 8  # per run, one process at a time
RIG = "faults"
FINAL = ("Succeeded", "Failed", "Terminated")

# The Refinery's check: the package compiles. It records each commit it passed.
CHECK = """
import compileall, subprocess, sys
if not compileall.compile_dir("pkg", quiet=1):
    sys.exit("pkg does not compile")
head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
with open({passed!r}, "a") as passed:
    passed.write(head)
"""


async def kill_at_random(town: Town, rng: random.Random) -> list[str]:
    """KILLS times: wait, kill one process, leave it dead a while, start it again. What it did, in order."""
    done = []
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(1.0, 7.0))
        victim = rng.choice(town.processes)
        down = rng.uniform(0.0, 2.0)
        convoy, refinery = town.status("convoys", "sprint"), town.status("refineries", "refinery")
        victim.kill()
        await asyncio.sleep(down)
        victim.start()
        done.append(
            f"{victim.name} at {convoy.get('completed', 0)} done/{refinery.get('merged', 0)} merged, "
            f"{down:.1f} s down"
        )
    return done


def manifests(town: Town) -> list[dict[str, Any]]:
    agent = [
        "--exclusive", str(town.work / "locks" / "{bead}"),
        "--runs", str(town.work / "runs" / "{bead}"),
        "--spans", str(town.work / "spans"),
        "--say", "working on {bead}",
        "--pause", "0.5",
        "--commit", "pkg/{bead}.py=DONE = True",
        "--say", "done",
    ]  # fmt: skip
    check = python_check(CHECK.format(passed=str(town.work / "passed")))
    return [
        rig_manifest(RIG, town.rig),
        refinery_manifest("refinery", RIG, autoMerge=True, strategy="merge", requiredChecks=[check]),
        convoy_manifest("sprint", RIG, BEADS, *agent, parallelism=PARALLELISM),
    ]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", SEEDS)
async def test_a_convoy_loses_nothing_while_its_processes_are_killed(seed: int, town: Town) -> None:
    """Every bead is worked by one agent and merged once; main only ever moves to a commit its check passed."""
    await town.start()
    await kubectl_apply(town.kubeconfig, *manifests(town))
    killing = asyncio.create_task(kill_at_random(town, random.Random(seed)))

    def finished() -> bool:
        for process in town.processes:
            process.revive()
        convoy, refinery = town.status("convoys", "sprint"), town.status("refineries", "refinery")
        polecats = town.api.objects("polecats", "default")
        return (
            killing.done()
            and convoy.get("phase") in ("Completed", "Failed")
            and refinery.get("merged", 0) + len(refinery.get("conflicts", [])) >= convoy.get("completed", 0)
            and not refinery.get("queue")
            and all(p.get("status", {}).get("phase") in FINAL for p in polecats)  # as kubectl shows them
        )

    try:
        await wait_until(finished, "the convoy to finish and the refinery to merge it", timeout=600)
    finally:
        killing.cancel()  # if it has not finished
    print(f"seed {seed}: killed {'; '.join(killing.result())}")
    assert not [p.name for p in town.processes if p.crashes]  # none exited on its own (none crash-looped)

    convoy = town.status("convoys", "sprint")
    failed = [
        f"{p['spec']['beadID']}: {p['status'].get('phase')} {p['status'].get('message')}"
        for p in town.api.objects("polecats", "default")
        if p["status"]["phase"] != "Succeeded"
    ]
    assert (convoy["phase"], convoy["completed"]) == ("Completed", len(BEADS)), failed
    polecats = [p["spec"]["beadID"] for p in town.api.objects("polecats", "default")]
    assert sorted(polecats) == BEADS  # one polecat for each bead, none spawned twice
    runs = {bead: len((town.work / "runs" / bead).read_text().split()) for bead in BEADS}
    assert runs == dict.fromkeys(BEADS, 1)  # each bead's agent ran once: adopted, never started again
    assert not list((town.work / "locks").glob("*.overlaps"))  # never two agents on one bead at once
    assert max_concurrent(town.work / "spans") <= PARALLELISM

    merges = Counter(subject for subject in town.rig.log() if subject.startswith("Merge "))
    assert len(merges) == len(BEADS) and set(merges.values()) == {1}, merges  # each branch merged once
    files = town.rig.files_on("main")
    assert {"README.md", "pkg/__init__.py"} <= files.keys()  # no branch lost what it did not touch
    assert sorted(name for name in files if name.startswith("pkg/ft-")) == [f"pkg/{b}.py" for b in BEADS]
    refinery = town.status("refineries", "refinery")
    assert refinery["merged"] == len(BEADS) and not refinery.get("conflicts")
    passed = set((town.work / "passed").read_text().split())
    moves = Repo(town.rig.remote).git.reflog("show", "--format=%H", "main").split()  # newest first
    landed = moves[: moves.index(town.base)]
    assert landed and set(landed) <= passed  # every commit the refinery moved main to had passed the check
