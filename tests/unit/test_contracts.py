"""Every activity a contract declares is one the worker runs, under the same name.

A workflow names an activity through its contract (`contracts/<topic>.py`); a
declaration with no registered implementation would leave that workflow's
activity waiting forever on the task queue, with nothing in any log.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from temporalio import activity

import contracts
from client.connection import connect
from client.settings import Settings
from worker.main import activities


def _name(function: object) -> str | None:
    definition = activity._Definition.from_callable(function)  # type: ignore[arg-type]
    return definition.name if definition else None


def declared() -> set[str]:
    names = set()
    for module_info in pkgutil.iter_modules(contracts.__path__):
        module = importlib.import_module(f"contracts.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                names |= {name for _, member in inspect.getmembers(cls) if (name := _name(member))}
    return names


async def test_every_declared_activity_is_registered(tmp_path: Path) -> None:
    """The worker registers an implementation of each activity the contracts declare, and no other."""
    settings = Settings(GASTOWN_HOME=tmp_path)
    registered = {
        _name(function) for function in activities(await connect(settings, lazy=True), settings).all
    }
    assert declared() == registered
    assert len(declared()) >= 25  # the scan found the contracts
