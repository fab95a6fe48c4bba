"""One way to reach Temporal: pydantic payloads, our namespace."""

from __future__ import annotations

import asyncio
import logging
import time

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import PayloadLimitsConfig

from client.settings import Settings

log = logging.getLogger(__name__)

# A memo holds the resource as people read it; a convoy's status lists every
# bead (up to 2,000: ~150 KiB), far above the 2 KiB warning default and far
# below the server's 2 MiB limit. Warn only when a memo is large for real.
MEMO_WARN_SIZE = 256 * 1024
RETRY_CAP = 5.0  # seconds between tries, at most, while Temporal does not answer
SAY_EVERY = 30.0  # seconds between "still waiting" lines


async def connect(settings: Settings, lazy: bool = False) -> Client:
    """A client of Temporal. `lazy`: connect on first use (and again after a lost connection)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        payload_limits=PayloadLimitsConfig(memo_warn_size=MEMO_WARN_SIZE),
        lazy=lazy,
    )


async def connect_when_up(settings: Settings) -> Client:
    """A client, once Temporal answers: a service started before Temporal, or while it restarts,
    waits for it instead of exiting (and, under a supervisor, crash-looping)."""
    delay, said = 0.1, 0.0
    while True:
        try:
            return await connect(settings)
        except RuntimeError as error:
            if time.monotonic() - said > SAY_EVERY:
                log.warning(
                    "Temporal at %s does not answer yet; waiting (%s)", settings.temporal_address, error
                )
                said = time.monotonic()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)
