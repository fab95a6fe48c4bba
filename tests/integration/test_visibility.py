"""What the Temporal UI files each resource under: its search attributes, from the moment it exists."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from temporalio.client import Client

from bridge.reconcile import Reconciler, workflow_id_of
from contracts import attributes
from crds import parse_resource
from crds.beadstore import BeadStorePhase
from crds.refinery import RefineryPhase
from crds.rig import RigPhase
from crds.witness import WitnessPhase
from tests.helpers import GitRig, beadstore_manifest, refinery_manifest, rig, rig_manifest, witness_manifest

pytestmark = pytest.mark.usefixtures("worker")


async def test_each_kind_is_filed_under_a_phase_of_its_own(
    reconciler: Reconciler, client: Client, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A new Rig, BeadStore, Refinery and Witness carry one of their own kind's phases as GastownPhase
    (all were filed under Pending, which none of them has; a Refinery stayed so until its first merge)."""
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    phases = {
        "Rig": RigPhase,
        "BeadStore": BeadStorePhase,
        "Refinery": RefineryPhase,
        "Witness": WitnessPhase,
    }
    resources = [
        parse_resource(manifest)
        for manifest in (
            beadstore_manifest("beads", rig_name, str(tmp_path / "issues.jsonl")),
            refinery_manifest("refinery", rig_name),
            witness_manifest(rig_name),
        )
    ]
    for resource in resources:
        await reconciler.apply(resource)
    for resource in [rig(rig_manifest(rig_name, git_rig)), *resources]:
        workflow_id = workflow_id_of(
            type(resource), resource.namespace if resource.INFO.namespaced else None, resource.name
        )
        description = await client.get_workflow_handle(workflow_id).describe()
        filed = description.typed_search_attributes.get(attributes.PHASE)
        assert filed in get_args(phases[resource.INFO.kind]), f"{resource.ref} is filed under {filed!r}"
