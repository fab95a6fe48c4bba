"""The worker and the bridge started while Temporal is down: they wait for it, and then work."""

from __future__ import annotations

from tests.faults.conftest import Town
from tests.helpers import kubectl_apply, polecat_manifest, rig_manifest, wait_until


async def test_the_worker_and_the_bridge_wait_for_temporal(town: Town) -> None:
    """Neither exits while Temporal is down (no crash loop); a Polecat applied meanwhile runs once it is up."""
    await town.start(town.worker, town.bridge)  # the bridge watches the cluster without Temporal
    await kubectl_apply(
        town.kubeconfig,
        rig_manifest("early", town.rig),
        polecat_manifest("nux", "early", "--commit", "n.txt=n"),
    )
    await wait_until(
        lambda: "does not answer yet; waiting" in town.worker.log.read_text(), "the worker to say it waits"
    )
    town.temporal.start()

    def succeeded() -> bool:
        for process in town.processes:
            process.revive()
        return town.status("polecats", "nux").get("phase") == "Succeeded"

    await wait_until(succeeded, "nux to run once Temporal is up", timeout=90)
    assert town.status("rigs", "early", namespace=None).get("phase") == "Ready"
    assert not [process.name for process in town.processes if process.crashes]
    assert town.rig.files_on("polecat/nux")["n.txt"] == "n\n"
