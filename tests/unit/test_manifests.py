"""Reading manifests from files, directories and stdin."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.manifests import load
from crds import InvalidResource

RIG = (
    "apiVersion: gastown.gastown.io/v1alpha1\nkind: Rig\nmetadata: {name: athena}\nspec: {localPath: /src}\n"
)
POLECAT = (
    "apiVersion: gastown.gastown.io/v1alpha1\nkind: Polecat\nmetadata: {name: nux}\n"
    "spec: {rig: athena, desiredState: Idle}\n"
)


def test_multi_document_file_and_directory(tmp_path: Path) -> None:
    """A file with several documents and a directory of files are all read, in order."""
    (tmp_path / "a.yaml").write_text(RIG + "---\n" + POLECAT)
    (tmp_path / "notes.txt").write_text("ignored")
    resources = load([str(tmp_path)], "team")
    assert [(r.INFO.kind, r.name) for r in resources] == [("Rig", "athena"), ("Polecat", "nux")]
    assert resources[1].namespace == "team"


def test_all_problems_of_all_documents(tmp_path: Path) -> None:
    """Every invalid document is reported, each line naming its resource."""
    bad = POLECAT.replace("Idle", "Sleeping") + "---\n" + POLECAT.replace("nux", "Nux")
    (tmp_path / "bad.yaml").write_text(RIG + "---\n" + bad)
    with pytest.raises(InvalidResource) as caught:
        load([str(tmp_path / "bad.yaml")], "default")
    assert len(caught.value.problems) == 2
    assert caught.value.problems[0].startswith("Polecat default/nux: spec.desiredState:")
    assert caught.value.problems[1].startswith("Polecat default/Nux: metadata.name:")


def test_duplicates_and_missing_files(tmp_path: Path) -> None:
    """The same resource twice, or a missing path, is refused."""
    (tmp_path / "twice.yaml").write_text(RIG + "---\n" + RIG)
    with pytest.raises(InvalidResource, match="appears twice"):
        load([str(tmp_path / "twice.yaml")], "default")
    with pytest.raises(InvalidResource, match="no such file"):
        load([str(tmp_path / "absent.yaml")], "default")


def test_broken_yaml(tmp_path: Path) -> None:
    """YAML that does not parse is refused with the parser's reason."""
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(InvalidResource, match="not valid YAML"):
        load([str(tmp_path / "broken.yaml")], "default")
