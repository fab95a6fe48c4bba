"""Which name a spawned polecat gets: the first free name of the rig's pools, in order.

Pure and deterministic, so a workflow can decide it; the Rig workflow, as the
single place that hands names out, is what keeps two concurrent spawns from
getting the same one (issue #4).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from workflows.name_themes import DEFAULT_THEME, RESERVED, THEMES


def pool_names(pools: list[str]) -> list[str]:
    """The pools as names, in order: a built-in theme stands for its names, anything else is a name."""
    names: list[str] = []
    for entry in pools or [DEFAULT_THEME]:
        for name in THEMES.get(entry, (entry,)):
            if name not in names and name not in RESERVED:
                names.append(name)
    return names


def _candidates(names: list[str]) -> Iterator[str]:
    yield from names
    round_ = 2
    while True:  # numbered overflow once every name is taken: furiosa-2, nux-2, ...
        for name in names:
            yield f"{name}-{round_}"
        round_ += 1


def next_name(pools: list[str], in_use: Collection[str]) -> str:
    """The first name of the pools not in use (in-use state comes from what exists, never from a file)."""
    names = pool_names(pools)
    if not names:
        raise ValueError("the name pools hold no usable name (all reserved?)")
    return next(name for name in _candidates(names) if name not in in_use)
