"""`gastown demo`, the README's first command, run as a user runs it: from nothing, with a home,
ports and a tmux socket of its own."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import libtmux
import psutil
from git import Repo

from tests.integration.test_embedded import own_runtime, run


async def test_the_demo_shows_the_whole_town_and_leaves_nothing_running(tmp_path: Path) -> None:
    """Six beads: five merged into main (the one that went quiet restarted by the Witness, its work
    kept), the failed one told to the webhook; then nothing the demo started is still running."""
    home, socket = tmp_path / "home", f"gastown-demo-{os.getpid()}"
    result = await run(own_runtime(home, socket), "demo")

    assert result.code == 0, result.out + result.err
    found = re.search(r"the project stays in (\S+)", result.out)
    assert found, result.out
    project = Path(found.group(1))
    try:
        rows = dict(re.findall(r"^   (at-\d{4}) +\S+ +(\w+ +\d+)", result.out, re.MULTILINE))
        assert {bead: " ".join(row.split()) for bead, row in rows.items()} == {
            "at-0001": "Merged 0",
            "at-0002": "Merged 0",
            "at-0003": "Merged 1",
            "at-0004": "Merged 0",
            "at-0005": "Failed 0",
            "at-0006": "Merged 0",
        }
        main = Repo(project / "athena.git").commit("main").tree / "athena"
        assert sorted(blob.name for blob in main.blobs) == [
            "__init__.py", "at-0001.py", "at-0002.py", "at-0003.py", "at-0004.py", "at-0006.py",
        ]  # fmt: skip
        assert "webhook | Stuck: polecat demo/" in result.out
        assert "webhook | Failed: polecat demo/" in result.out
        assert "stopped worker" in result.out and "stopped temporal" in result.out
        assert not libtmux.Server(socket_name=socket).sessions
        leftovers = [
            p.info
            for p in psutil.process_iter(["pid", "cmdline"])
            if str(home) in " ".join(p.info["cmdline"] or [])
        ]
        assert not leftovers
    finally:
        shutil.rmtree(project, ignore_errors=True)
