"""Names for spawned polecats, from the rig's pools."""

from __future__ import annotations

import pytest

from workflows.name_themes import RESERVED, THEMES
from workflows.names import next_name, pool_names


def test_default_pool_is_mad_max_in_order() -> None:
    """With no pools, names come from mad-max, first free first."""
    assert next_name([], set()) == "furiosa"
    assert next_name([], {"furiosa", "nux"}) == "slit"


def test_reserved_words_are_never_names() -> None:
    """witness is in the mad-max theme and reserved: it is skipped; so is a literal 'mayor'."""
    names = pool_names(["mad-max", "mayor", "obsidian"])
    assert "witness" in THEMES["mad-max"] and "witness" not in names
    assert not set(names) & RESERVED
    assert names[-1] == "obsidian"


def test_themes_and_literals_mix_in_order() -> None:
    """A theme entry stands for its names; other entries are literal names; duplicates count once."""
    names = pool_names(["alpha", "minerals", "alpha"])
    assert names[:3] == ["alpha", "obsidian", "quartz"] and names.count("alpha") == 1


def test_numbered_overflow_when_exhausted() -> None:
    """When every name is in use, names are numbered: first-2, then second-2, ..."""
    names = pool_names(["a", "b"])
    assert next_name(["a", "b"], set(names)) == "a-2"
    assert next_name(["a", "b"], {*names, "a-2"}) == "b-2"
    assert next_name(["a", "b"], {*names, "a-2", "b-2"}) == "a-3"


def test_every_theme_name_is_a_valid_resource_name() -> None:
    """All built-in names are DNS-1123 labels, so they can name Polecat resources."""
    import re

    label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    assert all(label.match(name) for theme in THEMES.values() for name in theme)


def test_only_reserved_names_is_an_error() -> None:
    """Pools that hold nothing usable are refused, not looped on forever."""
    with pytest.raises(ValueError, match="no usable name"):
        next_name(["witness", "mayor"], set())
