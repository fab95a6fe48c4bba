"""The model gateway's rules: who a request is for, where it goes, what it used, when to retry.

Pure but for the small files the gateway shares with the agent's launcher and
watcher (the home's secret, an agent's recorded limits); the server, its
sockets and streams are `launch.gateway_server`.

Every agent's model traffic goes through a gateway: a local agent's through its worker's
(`worker.gateway`), a pod's through its entrypoint's. An agent is handed, in each provider's
standard variables, a base URL on the gateway that carries its polecat's
token, `http://127.0.0.1:PORT/<token>/<provider><upstream path>`, and, where
the worker holds the provider's key, a placeholder in place of the key: the
gateway adds the real one, so the key never reaches the agent's process.
Where the worker holds no key, the agent's own credentials (a claude-code
login, say) pass through untouched.

The token is the polecat's agent key signed with the host's secret: an
agent cannot spend in another polecat's name. The gateway reads each
response's usage as the provider reports it (streamed or not) and appends
it to the polecat's ledger (`launch.usage`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from launch.agents import PROVIDERS, endpoint
from launch.usage import UsageRecord


@dataclass(frozen=True)
class GatewayAccess:
    """What the agent launcher needs of the gateway: where it is and the secret tokens are signed with."""

    url: str
    secret: bytes


PLACEHOLDER_KEY = "gastown-gateway-adds-the-key"
# A pod's gateway is its entrypoint's, on a port known once the pod runs: the pod's spec names its
# base by this stand-in, which the entrypoint replaces before the agent starts.
POD_GATEWAY_BASE = "http://gastown-gateway.invalid/token"
# The header each provider takes its key in (the gateway sets it from the worker's environment).
KEY_HEADERS = {"anthropic": "x-api-key", "openai": "authorization", "litellm": "authorization"}
AUTH_HEADERS = ("x-api-key", "authorization")
_AGENT_KEY = re.compile(r"^[a-z0-9][a-z0-9.-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def agent_directory(home: Path, agent_key: str) -> Path:
    """A polecat's agent directory (its ledgers and files), from its key `<namespace>/<session>`."""
    namespace, session = agent_key.split("/", 1)
    return home / "polecats" / namespace / f"{session}.agent"


def host_secret(home: Path) -> bytes:
    """This home's signing secret: made once, kept in the home (0600), shared by its workers."""
    path = home / "gateway.secret"
    if not path.exists():  # written whole, then linked into place: the first worker's secret wins
        descriptor, draft = tempfile.mkstemp(dir=home)  # 0600
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
        os.unlink(draft)
    return path.read_text().strip().encode()


def mint(secret: bytes, agent_key: str) -> str:
    """The token of `agent_key` (`<namespace>/<session>`): readable, and signed by the host."""
    encoded = base64.urlsafe_b64encode(agent_key.encode()).decode().rstrip("=")
    return f"{encoded}.{_signature(secret, agent_key)}"


def verify(secret: bytes, token: str) -> str | None:
    """The agent key a token was minted for; None if this host did not mint it."""
    encoded, _, signature = token.partition(".")
    try:
        agent_key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not _AGENT_KEY.match(agent_key) or not hmac.compare_digest(signature, _signature(secret, agent_key)):
        return None
    return agent_key


def _signature(secret: bytes, agent_key: str) -> str:
    return hmac.new(secret, agent_key.encode(), hashlib.sha256).hexdigest()[:32]


def upstream(provider: str, environ: Mapping[str, str]) -> str:
    """Where the provider really is: the worker's variable, or the provider's own URL."""
    return endpoint(provider, environ) or PROVIDERS[provider].default_url


def upstream_url(provider: str, environ: Mapping[str, str], path: str) -> str:
    """The provider's URL of a request the agent sent to `<gateway>/<token>/<provider><path>`
    (the agent's base URL already holds the upstream's own path)."""
    parts = urlsplit(upstream(provider, environ))
    return f"{parts.scheme}://{parts.netloc}{path}"


def agent_environ(environ: Mapping[str, str], base: str) -> dict[str, str]:
    """The worker's environment as an agent gets it: every provider's base URL on the gateway
    (`base`: the gateway's URL and the agent's token, `gateway_base`), and a placeholder for every
    key the worker holds."""
    seen = dict(environ)
    for name, provider in PROVIDERS.items():
        path = urlsplit(upstream(name, environ)).path.rstrip("/")
        for variable in provider.url_variables:
            seen[variable] = f"{base}/{name}{path}"
        if provider.key_variable and environ.get(provider.key_variable):
            seen[provider.key_variable] = PLACEHOLDER_KEY
    return seen


def gateway_base(url: str, token: str) -> str:
    """Where an agent's requests go: the gateway's URL, then its token (`mint`)."""
    return f"{url}/{token}"


def upstream_headers(provider: str, headers: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The request's headers as the provider gets them: the placeholder replaced by the real key."""
    hop = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
    sent = {
        name: value
        for name, value in headers.items()
        if name.lower() not in hop and not (name.lower() in AUTH_HEADERS and PLACEHOLDER_KEY in value)
    }
    sent["Accept-Encoding"] = "identity"  # the gateway reads the usage out of the answer
    key_variable = PROVIDERS[provider].key_variable
    key = environ.get(key_variable) if key_variable else None
    if key and provider in KEY_HEADERS:
        header = KEY_HEADERS[provider]
        sent[header] = key if header == "x-api-key" else f"Bearer {key}"
    return sent


def with_usage_asked(path: str, body: bytes) -> tuple[bytes, bool]:
    """A streamed chat completion asks for its usage (OpenAI sends none unless asked); True if
    the gateway asked, so the usage chunk the agent did not ask for is kept from it."""
    if not path.endswith("/chat/completions"):
        return body, False
    try:
        request = json.loads(body)
    except ValueError:
        return body, False
    if not isinstance(request, dict) or not request.get("stream"):
        return body, False
    options = request.get("stream_options") or {}
    if options.get("include_usage"):
        return body, False
    request["stream_options"] = {**options, "include_usage": True}
    return json.dumps(request).encode(), True


class UsageMeter:
    """Reads one answer as it passes: what to forward, and the usage the provider reported."""

    def __init__(self, provider: str, content_type: str, model: str | None, strip_usage_chunk: bool) -> None:
        self.provider = provider
        self.model = model
        self.streamed = "event-stream" in content_type
        self.lines = "ndjson" in content_type
        self.strip_usage_chunk = strip_usage_chunk
        self.counts: dict[str, int] = {}
        self.buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        """The part of `chunk` to forward now (whole events, when they are events)."""
        if not (self.streamed or self.lines):
            self.buffer += chunk
            return chunk
        self.buffer += chunk.replace(b"\r\n", b"\n")
        separator = b"\n\n" if self.streamed else b"\n"
        *complete, self.buffer = self.buffer.split(separator)
        forwarded = [part for part in complete if self._read_event(part)]
        return b"".join(part + separator for part in forwarded)

    def finish(self) -> tuple[bytes, UsageRecord | None]:
        """What is left to forward, and the request's usage (None: the answer reported none)."""
        rest, self.buffer = self.buffer, b""
        if not (self.streamed or self.lines):  # forwarded as it came: read it whole now
            self._read(_json(rest))
            rest = b""
        elif rest.strip() and not self._read_event(rest):
            rest = b""
        if not self.counts:
            return rest, None
        return rest, UsageRecord(model=self.model or "unknown", provider=self.provider, **self.counts)

    def _read_event(self, event: bytes) -> bool:
        """Take the usage out of one event; False if the event must not be forwarded."""
        text = event.decode("utf-8", errors="replace")
        data = (
            text
            if self.lines
            else "\n".join(line[5:].lstrip() for line in text.split("\n") if line.startswith("data:"))
        )
        message = _json(data.encode())
        self._read(message)
        return not (self.strip_usage_chunk and message.get("usage") and message.get("choices") == [])

    def _read(self, message: dict[str, Any]) -> None:
        """Usage in each provider's shape: Anthropic's, OpenAI's (chat and responses), Ollama's."""
        kind = message.get("type")
        if kind == "message_start":
            message = message.get("message") or {}
        elif kind == "response.completed":
            message = message.get("response") or {}
        self.model = message.get("model") or self.model
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._count(usage)
        if message.get("done") and "eval_count" in message:  # Ollama's last line
            self.counts["input_tokens"] = int(message.get("prompt_eval_count") or 0)
            self.counts["output_tokens"] = int(message["eval_count"] or 0)

    def _count(self, usage: dict[str, Any]) -> None:
        counts = self.counts
        if "prompt_tokens" in usage or "completion_tokens" in usage:  # OpenAI chat: cached is part of prompt
            cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            counts["input_tokens"] = int(usage.get("prompt_tokens") or 0) - cached
            counts["output_tokens"] = int(usage.get("completion_tokens") or 0)
            counts["cache_read_tokens"] = cached
        elif "input_tokens_details" in usage:  # OpenAI responses: likewise
            cached = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
            counts["input_tokens"] = int(usage.get("input_tokens") or 0) - cached
            counts["output_tokens"] = int(usage.get("output_tokens") or 0)
            counts["cache_read_tokens"] = cached
        else:  # Anthropic: message_start has them all, message_delta the final (cumulative) ones
            for field, name in (
                ("input_tokens", "input_tokens"),
                ("output_tokens", "output_tokens"),
                ("cache_read_input_tokens", "cache_read_tokens"),
                ("cache_creation_input_tokens", "cache_write_tokens"),
            ):
                if usage.get(field) is not None:
                    counts[name] = int(usage[field])


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# Answers that mean "not now, later": a rate or usage limit (429), Anthropic's overload (529).
LIMIT_STATUSES = (429, 529)
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def limit_reset(status: int, headers: Mapping[str, str], now: float) -> float | None:
    """When (epoch seconds) a provider that answered `status` says to try again; None if the answer
    is not a limit. The provider's own word wins: `retry-after-ms`, `retry-after` (seconds or an
    HTTP date); else the latest reset it names: Anthropic's `anthropic-ratelimit-unified-reset`
    (a subscription's usage limit, epoch seconds) and `anthropic-ratelimit-*-reset` (RFC 3339),
    OpenAI's `x-ratelimit-reset-*` (durations such as 6m0s). A limit that names no time: in a
    minute."""
    if status not in LIMIT_STATUSES:
        return None
    lowered = {name.lower(): value for name, value in headers.items()}
    with contextlib.suppress(ValueError):
        if "retry-after-ms" in lowered:
            return now + float(lowered["retry-after-ms"]) / 1000
    if "retry-after" in lowered:
        retry = lowered["retry-after"].strip()
        with contextlib.suppress(ValueError):
            return now + float(retry)
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(retry).timestamp()
    resets: list[float] = []
    for name, value in lowered.items():
        with contextlib.suppress(ValueError):
            if name == "anthropic-ratelimit-unified-reset":
                resets.append(float(value))
            elif name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
                resets.append(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
            elif name.startswith("x-ratelimit-reset-"):
                parts = _GO_DURATION.findall(value)
                if parts:
                    resets.append(now + sum(float(number) * _UNIT[unit] for number, unit in parts))
    return max(resets) if resets else now + 60.0


# The limits the gateway did not wait out for an agent, one JSON line each, in its agent directory.
LIMITS_LEDGER = "limits.jsonl"


class LimitRecord(BaseModel):
    """A provider's limit the agent ran into, too long for the gateway to hold its request."""

    provider: str
    until: float  # epoch seconds: when the provider said to try again
    status: int
    message: str = ""


def pending_limit(agent_dir: Path, now: float) -> LimitRecord | None:
    """The last limit recorded for the agent, unless it was waited out by `now` (an earlier
    attempt's)."""
    try:
        lines = (agent_dir / LIMITS_LEDGER).read_bytes().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            limit = LimitRecord.model_validate_json(line)
            return limit if limit.until > now else None
    return None
