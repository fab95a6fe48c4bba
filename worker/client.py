"""One way to reach Temporal: pydantic payloads, our namespace."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import PayloadLimitsConfig

from worker.settings import Settings

# A memo holds the resource as people read it; a convoy's status lists every
# bead (up to 2,000: ~150 KiB), far above the 2 KiB warning default and far
# below the server's 2 MiB limit. Warn only when a memo is large for real.
MEMO_WARN_SIZE = 256 * 1024


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        payload_limits=PayloadLimitsConfig(memo_warn_size=MEMO_WARN_SIZE),
    )
