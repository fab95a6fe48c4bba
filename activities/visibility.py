"""Reading what Temporal knows of our workflows: a running workflow's own record, and counts.

A description comes from the workflow's own record, so it is never behind; a
count comes from visibility, one query however many workflows it covers.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from activities.watching import poll_until_changed
from client.queries import rig_polecats
from contracts import attributes
from contracts import visibility as contract
from contracts.visibility import CountWatch, FinishedPolecat, FinishedPolecats, SucceededWatch
from crds.polecat import LIVE_PHASES, PolecatStatus


class VisibilityActivities(contract.VisibilityActivities):
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name=contract.WATCH_POLECAT_COUNT)
    async def watch_polecat_count(self, watch: CountWatch) -> int:
        query = rig_polecats(watch.rig, *LIVE_PHASES)

        async def look() -> int:
            return (await self.client.count_workflows(query)).count

        return await poll_until_changed(
            look, lambda count: count != watch.seen, poll=watch.poll, limit=watch.limit
        )

    @activity.defn(name=contract.WATCH_SUCCEEDED)
    async def watch_succeeded(self, watch: SucceededWatch) -> FinishedPolecats:
        query = rig_polecats(watch.rig, "Succeeded")

        async def look() -> FinishedPolecats:
            found = []
            async for execution in self.client.list_workflows(query):
                memo = await execution.memo()
                metadata = memo.get(attributes.MEMO_METADATA, {})
                status = PolecatStatus.model_validate(memo.get(attributes.MEMO_STATUS, {}))
                merged = any(c.type == "Merged" and c.status == "True" for c in status.conditions)
                if status.branch and not merged:
                    found.append(
                        FinishedPolecat(
                            namespace=metadata.get("namespace", "default"),
                            name=metadata.get("name", execution.id.rsplit("/", 1)[-1]),
                            uid=metadata.get("uid"),
                            branch=status.branch,
                            commit=status.commit,
                            bead_id=status.bead_id,
                        )
                    )
            return FinishedPolecats(polecats=sorted(found, key=lambda p: (p.namespace, p.name)))

        return await poll_until_changed(
            look, lambda finished: finished.digest() != watch.seen, poll=watch.poll, limit=watch.limit
        )
