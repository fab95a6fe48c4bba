"""The gateway's rules: tokens, the agent's environment, and usage read out of each provider's answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from launch.gateway import (
    PLACEHOLDER_KEY,
    UsageMeter,
    agent_environ,
    limit_reset,
    mint,
    upstream_headers,
    upstream_url,
    verify,
    with_usage_asked,
)

SECRET = b"host-secret"


def test_a_token_names_its_polecat_and_cannot_be_forged() -> None:
    token = mint(SECRET, "default/gt-default-nux-1a2b3c4d")
    assert verify(SECRET, token) == "default/gt-default-nux-1a2b3c4d"
    assert verify(b"another-host", token) is None
    forged = mint(b"attacker", "default/gt-default-other-00000000")
    assert verify(SECRET, forged) is None
    encoded, _, signature = token.partition(".")
    assert verify(SECRET, f"{encoded}x.{signature}") is None
    assert verify(SECRET, "not a token") is None
    assert verify(SECRET, mint(SECRET, "../../etc/x")) is None  # never a path out of the home


def test_an_agent_gets_the_gateway_and_never_a_key_the_worker_holds() -> None:
    """Every provider's URL variables name the gateway, keeping the upstream's path; a key the worker
    holds becomes a placeholder; a provider the worker has no key for gets none."""
    environ = {"ANTHROPIC_API_KEY": "sk-real", "OPENAI_BASE_URL": "https://llm.example/v1", "HOME": "/h"}
    seen = agent_environ(environ, "http://127.0.0.1:9/T")
    assert seen["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9/T/anthropic"
    assert seen["OPENAI_BASE_URL"] == seen["OPENAI_API_BASE"] == "http://127.0.0.1:9/T/openai/v1"
    assert seen["OLLAMA_HOST"] == "http://127.0.0.1:9/T/ollama"
    assert seen["ANTHROPIC_API_KEY"] == PLACEHOLDER_KEY and "OPENAI_API_KEY" not in seen
    assert "sk-real" not in json.dumps(seen) and seen["HOME"] == "/h"
    assert (
        upstream_url("openai", environ, "/v1/chat/completions") == "https://llm.example/v1/chat/completions"
    )


def test_the_placeholder_is_swapped_for_the_key_and_an_agents_own_login_passes() -> None:
    environ = {"ANTHROPIC_API_KEY": "sk-real"}
    sent = upstream_headers(
        "anthropic", {"x-api-key": PLACEHOLDER_KEY, "Host": "gw", "anthropic-version": "1"}, environ
    )
    assert sent["x-api-key"] == "sk-real" and sent["anthropic-version"] == "1" and "Host" not in sent
    own = upstream_headers("anthropic", {"Authorization": "Bearer oauth-login"}, {})
    assert own["Authorization"] == "Bearer oauth-login" and "x-api-key" not in own
    bearer = upstream_headers(
        "openai", {"Authorization": f"Bearer {PLACEHOLDER_KEY}"}, {"OPENAI_API_KEY": "k"}
    )
    assert bearer["authorization"] == "Bearer k" and "Authorization" not in bearer


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e.get('type', 'x')}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_anthropic_usage_is_read_from_the_stream_however_it_is_cut(size: int) -> None:
    """message_start has input and cache tokens; message_delta the final output count. The stream is
    forwarded unchanged, event by event."""
    stream = sse(
        {"type": "message_start", "message": {"model": "claude-x", "usage": {
            "input_tokens": 11, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 40, "output_tokens": 1}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_delta", "usage": {"output_tokens": 27}},
        {"type": "message_stop"},
    )  # fmt: skip
    meter = UsageMeter("anthropic", "text/event-stream; charset=utf-8", "asked-model", False)
    out = b"".join(meter.feed(stream[i : i + size]) for i in range(0, len(stream), size))
    rest, record = meter.finish()
    assert out + rest == stream
    assert record is not None and record.model == "claude-x" and record.provider == "anthropic"
    assert (record.input_tokens, record.output_tokens) == (11, 27)
    assert (record.cache_read_tokens, record.cache_write_tokens) == (300, 40)


def test_openai_usage_the_gateway_asked_for_is_kept_from_the_agent() -> None:
    """A streamed chat completion is made to report usage; the usage chunk the agent did not ask
    for is read and not forwarded; cached tokens are taken out of the prompt's count."""
    body, asked = with_usage_asked(
        "/v1/chat/completions", json.dumps({"stream": True, "model": "m"}).encode()
    )
    assert asked and json.loads(body)["stream_options"] == {"include_usage": True}
    assert (
        with_usage_asked(
            "/v1/chat/completions", b'{"stream": true, "stream_options": {"include_usage": true}}'
        )[1]
        is False
    )
    chunk = {"model": "gpt-x", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    usage = {"model": "gpt-x", "choices": [], "usage": {
        "prompt_tokens": 120, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 100}}}  # fmt: skip
    stream = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode()
    meter = UsageMeter("openai", "text/event-stream", "m", strip_usage_chunk=True)
    out = meter.feed(stream)
    rest, record = meter.finish()
    assert out + rest == f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    assert record is not None and (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (
        20,
        100,
        9,
    )


def test_a_whole_answer_and_ollamas_lines_are_read_too() -> None:
    whole = json.dumps({"model": "m", "usage": {"input_tokens": 5, "output_tokens": 6}}).encode()
    meter = UsageMeter("anthropic", "application/json", None, False)
    assert meter.feed(whole) == whole
    rest, record = meter.finish()
    assert rest == b"" and record is not None and (record.input_tokens, record.output_tokens) == (5, 6)
    lines = b'{"done": false, "message": {}}\n{"done": true, "model": "llama3", "prompt_eval_count": 8, "eval_count": 3}\n'
    meter = UsageMeter("ollama", "application/x-ndjson", None, False)
    assert meter.feed(lines) == lines
    _, record = meter.finish()
    assert record is not None and (record.model, record.input_tokens, record.output_tokens) == (
        "llama3",
        8,
        3,
    )


def test_an_answer_without_usage_records_nothing() -> None:
    meter = UsageMeter("anthropic", "application/json", "m", False)
    meter.feed(b'{"type": "error", "error": {"type": "rate_limit_error"}}')
    assert meter.finish() == (b"", None)


NOW = 1_800_000_000.0


def test_a_limit_says_when_to_try_again_in_each_providers_words() -> None:
    """retry-after (seconds, milliseconds or a date) is the provider's own word; else the latest reset
    it names: Anthropic's unified (epoch) and per-limit (RFC 3339) resets, OpenAI's durations. A
    limit that names no time is a minute; an answer that is no limit has none."""
    assert limit_reset(429, {"Retry-After": "30"}, NOW) == NOW + 30
    assert limit_reset(429, {"retry-after-ms": "1500", "retry-after": "2"}, NOW) == NOW + 1.5
    assert limit_reset(529, {"retry-after": "Fri, 15 Jan 2027 08:00:00 GMT"}, NOW - 10) == NOW
    unified = {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": "1800018000",
    }
    assert limit_reset(429, unified, NOW) == NOW + 5 * 3600
    per_limit = {
        "anthropic-ratelimit-tokens-reset": "2027-01-15T08:01:00Z",
        "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:30Z",
    }
    assert limit_reset(429, per_limit, NOW) == NOW + 60
    assert (
        limit_reset(429, {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "1.5s"}, NOW)
        == NOW + 360
    )
    assert limit_reset(429, {}, NOW) == NOW + 60
    assert limit_reset(200, {"retry-after": "30"}, NOW) is None
    assert limit_reset(500, {"retry-after": "30"}, NOW) is None
