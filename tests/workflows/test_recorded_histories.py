"""Workflows started by an earlier version keep running after an upgrade.

Every kind is an entity that may live for days; a worker of a new version
replays their histories. These are real histories recorded with the version
they are named after (`tests/data/histories/<kind>-<commit>.json`; those of
595c435 and dc7251e are one `gastown demo` run each, every kind in it, made by
`python -m tests.record_histories`); each must replay on the current code
without a nondeterminism error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker.main import WORKFLOWS

HISTORIES = sorted((Path(__file__).parents[1] / "data" / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_recorded_history_replays_on_this_version(path: Path) -> None:
    """A workflow recorded by an earlier version replays on this one."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
