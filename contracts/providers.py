"""A model provider's fleet-wide gate: at most N agents of it at once, and a pause after its limit.

The worker's GASTOWN_PROVIDER_LIMITS names the gated providers and their
caps (`anthropic=3,openai=10`). A polecat about to start an agent of a gated
provider asks the gate of that provider and key for a slot, and starts once
admitted, first come first served across convoys; it gives the slot back when
its agent stops. A rate limit one agent meets pauses admissions until the
limit's reset, instead of every polecat hitting it in turn.

Limits are a key's (an account's), so there is one gate, one entity workflow,
per provider and key: `provider/anthropic@<key id>`, the key id a short
fingerprint of the key (the worker's, for a local agent) or of the secret a
pod's agent uses (its apiKeySecretRef, or its claudeCredsSecretRef: the
worker never sees those); an agent with neither (its own login) is
`provider/anthropic`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel
from temporalio import activity

from crds.polecat import PolecatSpec

ADMIT = "providers.admit"
RECLAIM = "providers.reclaim"

# The provider each named agent speaks to when its agentConfig names none.
DEFAULT_PROVIDERS = {"claude-code": "anthropic"}


def provider_of(spec: PolecatSpec) -> str | None:
    """The provider a polecat's agent uses: its agentConfig's, else its agent's own; None: unknown."""
    configured = spec.agent_config.provider if spec.agent_config else None
    return configured or DEFAULT_PROVIDERS.get(spec.agent)


def parse_limits(text: str) -> dict[str, int]:
    """GASTOWN_PROVIDER_LIMITS: `anthropic=3,openai=10`; a bad entry is an error naming the rule."""
    limits: dict[str, int] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, _, cap = entry.partition("=")
        if not name.strip() or not cap.strip().isdigit() or int(cap) < 1:
            raise ValueError(
                f"GASTOWN_PROVIDER_LIMITS: {entry!r} must be <provider>=<agents at once, 1 or more>"
            )
        limits[name.strip()] = int(cap)
    return limits


def gate_name(provider: str, key_id: str | None) -> str:
    """A gate's name: `anthropic`, or `anthropic@1f2e3d4c` for one key of it."""
    return provider if key_id is None else f"{provider}@{key_id}"


def provider_of_gate(gate: str) -> str:
    return gate.partition("@")[0]


def key_id(key: str) -> str:
    """A short fingerprint of a key (or of a key's reference), safe to show."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class AdmitRequest(BaseModel):
    provider: str
    polecat: str  # the asking polecat's workflow id: where the provider sends `admitted`
    in_pod: bool = False  # a pod's agent uses the key of `key_ref`, never the worker's
    key_ref: str | None = None  # a pod's secret: `<namespace>/<secret>/<key>` (None: no key of its own)


class Admission(BaseModel):
    gated: bool  # False: the provider has no cap: start at once
    cap: int = 0
    gate: str | None = None  # the gate asked (`gate_name`)


class Ask(BaseModel):
    """A polecat's request for a slot (signal `ask` of the provider's workflow)."""

    polecat: str
    cap: int  # the worker's cap when it asked: the latest one counts


class LimitNotice(BaseModel):
    """One of the provider's agents met a limit: admit no one until `until`."""

    polecat: str
    until: datetime


class ProviderStatus(BaseModel):
    """What `gastown get providers` shows, from the provider workflow's memo."""

    provider: str
    key_id: str | None = None  # the key it gates (`key_id`); None: agents with no key of the workers'
    cap: int
    running: list[str] = []  # polecat workflow ids holding a slot
    waiting: list[str] = []  # in order: first come, first served
    paused_until: datetime | None = None

    @property
    def gate(self) -> str:
        return gate_name(self.provider, self.key_id)


class ProviderInput(BaseModel):
    """What starts (or continues) a provider's workflow."""

    status: ProviderStatus
    history_limit: int = 4000


class ProviderActivities:
    @activity.defn(name=ADMIT)
    async def admit(self, request: AdmitRequest) -> Admission:
        """Ask the provider's workflow for a slot (starting it if need be); not gated: at once."""
        raise NotImplementedError

    @activity.defn(name=RECLAIM)
    async def reclaim(self, holders: list[str]) -> list[str]:
        """Those of `holders` whose polecat workflow no longer runs (their slot is free again)."""
        raise NotImplementedError
