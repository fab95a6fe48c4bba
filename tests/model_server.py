"""A model provider the tests control, answering with a script, in two wire protocols.

No language model runs here, so the real agent CLIs are driven by this
server instead. It speaks what they speak, streamed as server-sent events:

- the Anthropic Messages API (`POST /v1/messages`: message_start,
  content_block_start/delta/stop, message_delta, message_stop), for claude-code;
- the OpenAI chat completions API (`POST /v1/chat/completions`: chunks with
  `delta.tool_calls` or `delta.content`, then `data: [DONE]`), for opencode
  and aider;
- Ollama's chat API (`POST /api/chat`: newline-delimited JSON), for aider;

and answers each turn that offers tools with the next step of a plan: a tool
call (the agent runs it with its own tools) or, once the plan is done, text.
Each request is recorded, and each answer reports its usage as the provider
does (Anthropic: input, output and cache tokens in message_start and
message_delta; OpenAI: a last chunk with `usage` when the request asks for it
with `stream_options.include_usage`, cached tokens inside `prompt_tokens`;
Ollama: `prompt_eval_count` and `eval_count`), different for each answer, and
what it reported is kept in `reported`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.helpers import free_port


@dataclass
class ToolCall:
    """Call the agent's own tool `name` (e.g. Bash) with `input`."""

    name: str
    input: dict[str, Any]


@dataclass
class ModelServer:
    """Answers the n-th turn that offers tools with plan[n]; after the plan, with `final` text."""

    plan: list[ToolCall | None]  # None: answer with `final` (the run ends there)
    final: str = "Done."
    follow_ups: bool = False  # a prompt after the first is a step done too (see `_step`)
    # Instead of answering: an HTTP status (429, 500) with the provider's error body, "drop" (the
    # stream starts, then the connection is cut) or "hang" (no answer at all).
    failure: int | str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of each request, in order
    arrived: list[float] = field(default_factory=list)  # when each request came (epoch seconds)
    # A provider's rate limit: once `limit_after` turns that offer tools are answered, every request
    # for the next `limit_for` seconds gets a 429 with the provider's own body and reset headers.
    limit_after: int | None = None
    turns: int = 0  # turns that offered tools, answered
    limit_for: float = 0.0
    limited: list[int] = field(default_factory=list)  # which requests (their index) it limited
    limit_ends: float | None = None
    # The usage each answer reported, normalised as `launch.usage.UsageRecord` counts it.
    reported: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def _usage(self, model: str, cache_write: bool = True) -> dict[str, Any]:
        """The next answer's usage, recorded: input, output and cache counts unlike any other's."""
        n = len(self.reported) + 1
        usage = {"model": model, "input_tokens": 100 + n, "output_tokens": 10 + n,
                 "cache_read_tokens": 1000 * n, "cache_write_tokens": 7 * n if cache_write else 0}  # fmt: skip
        self.reported.append(usage)
        return usage

    def _openai_usage(self, model: str) -> dict[str, Any]:
        usage = self._usage(model, cache_write=False)
        cached = usage["cache_read_tokens"]
        return {
            "prompt_tokens": usage["input_tokens"] + cached,
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["input_tokens"] + cached + usage["output_tokens"],
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    async def _fail(self, request: web.Request, anthropic: bool) -> web.StreamResponse:
        """The failure, in the protocol's own shapes (its error body; a stream cut mid-event)."""
        if self.failure == "hang":
            await asyncio.Event().wait()  # until the server stops
        if self.failure == "drop":
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            cut = (
                b'event: message_start\ndata: {"type": "message_start"'
                if anthropic
                else b'data: {"id": "chatcmpl'
            )
            await response.write(cut)
            assert request.transport is not None
            request.transport.close()
            return response
        kind = "rate_limit_error" if self.failure == 429 else "api_error"
        text = f"the test's model server answers {self.failure}"
        body: dict[str, Any] = (
            {"type": "error", "error": {"type": kind, "message": text}}
            if anthropic
            else {"error": {"message": text, "type": kind, "code": str(self.failure)}}
        )
        # As real providers do, say when to try again: soon, so the agents' retries end soon.
        retry = {"retry-after-ms": "100", "retry-after": "0"}
        return web.json_response(body, status=int(self.failure or 500), headers=retry)

    def _limit(self, anthropic: bool) -> web.Response | None:
        """A 429 as the provider sends it while its limit lasts (None: not limited now)."""
        if self.limit_after is None or self.turns < self.limit_after:
            return None
        now = time.time()
        if self.limit_ends is None:
            self.limit_ends = now + self.limit_for
        if now >= self.limit_ends:
            return None
        self.limited.append(len(self.requests) - 1)
        wait = self.limit_ends - now
        if anthropic:  # a subscription's usage limit, as Claude Code users meet it
            headers = {"retry-after": str(math.ceil(wait)), "anthropic-ratelimit-unified-status": "rejected",
                       "anthropic-ratelimit-unified-reset": str(int(self.limit_ends) + 1)}  # fmt: skip
            body: dict[str, Any] = {"type": "error", "error": {"type": "rate_limit_error",
                                    "message": "This request would exceed your account's rate limit."}}  # fmt: skip
        else:
            headers = {"retry-after": str(math.ceil(wait)), "x-ratelimit-reset-requests": f"{wait:.3f}s",
                       "x-ratelimit-remaining-requests": "0"}  # fmt: skip
            message = f"Rate limit reached for requests per min (RPM). Please try again in {wait:.0f}s."
            body = {"error": {"message": message, "type": "requests", "code": "rate_limit_exceeded"}}
        return web.json_response(body, status=429, headers=headers)

    def _step(self, body: dict[str, Any]) -> ToolCall | None:
        """The plan's next step: as many steps are done as the conversation holds tool results
        (and, with `follow_ups`, prompts after the first: a None step ends a run, and a follow-up
        in the same session goes on past it)."""
        if not body.get("tools"):
            return None  # a side request (a title, a summary): text will do
        self.turns += 1
        done = prompts = 0
        for message in body.get("messages", []):
            content = message.get("content")
            blocks = content if isinstance(content, list) else []
            result = message.get("role") == "tool" or any(b.get("type") == "tool_result" for b in blocks)
            done += result
            prompts += message.get("role") == "user" and not result
        done += max(prompts - 1, 0) if self.follow_ups else 0
        return self.plan[done] if done < len(self.plan) else None

    async def _body(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.arrived.append(time.time())
        return body

    async def ollama_chat(self, request: web.Request) -> web.StreamResponse:
        """A turn of Ollama's chat API: text only (aider sends no tools), streamed as JSON lines."""
        body = await self._body(request)
        usage = self._usage(str(body.get("model")), cache_write=False)
        usage["cache_read_tokens"] = 0  # Ollama has no prompt cache to report
        done = {"model": body.get("model"), "created_at": "2026-01-01T00:00:00Z", "done": True,
                "done_reason": "stop", "prompt_eval_count": usage["input_tokens"],
                "eval_count": usage["output_tokens"]}  # fmt: skip
        answer = {"role": "assistant", "content": self.final}
        if not body.get("stream", True):
            return web.json_response({**done, "message": answer})
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in (
            {**done, "done": False, "message": answer},
            {**done, "message": {**answer, "content": ""}},
        ):
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
        return response

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """A turn of the chat completions API, streamed or (`stream` false) as one JSON answer."""
        body = await self._body(request)
        if self.failure is not None:
            return await self._fail(request, anthropic=False)
        limited = self._limit(anthropic=False)
        if limited is not None:
            return limited
        step = self._step(body)
        if step is None:
            deltas: list[dict[str, Any]] = [{"role": "assistant", "content": self.final}]
            finish = "stop"
        else:
            call = {"index": 0, "id": f"call_{len(self.requests):04}", "type": "function"}
            deltas = [
                {
                    "role": "assistant",
                    "tool_calls": [{**call, "function": {"name": step.name, "arguments": ""}}],
                },
                {"tool_calls": [{"index": 0, "function": {"arguments": json.dumps(step.input)}}]},
            ]
            finish = "tool_calls"
        if not body.get("stream"):  # one JSON answer (aider's commit messages ask this way)
            message: dict[str, Any] = {"role": "assistant", "content": None}
            for delta in deltas:
                message["content"] = delta.get("content", message["content"])
                message.setdefault("tool_calls", []).extend(delta.get("tool_calls", []))
            if step is not None:
                message["tool_calls"][0]["function"]["arguments"] = json.dumps(step.input)
            else:
                message.pop("tool_calls")
            choice = {"index": 0, "message": message, "finish_reason": finish}
            usage = self._openai_usage(str(body.get("model")))
            return web.json_response(
                {"id": "chatcmpl", "object": "chat.completion", "created": 0, "model": body.get("model"),
                 "choices": [choice], "usage": usage}
            )  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        model = body.get("model", "model")
        chunks: list[dict[str, Any]] = [
            {"choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
            for delta, reason in [*((delta, None) for delta in deltas), ({}, finish)]
        ]
        if (body.get("stream_options") or {}).get("include_usage"):  # as OpenAI: only when asked
            chunks.append({"choices": [], "usage": self._openai_usage(str(model))})
        for part in chunks:
            chunk = {"id": f"chatcmpl-{len(self.requests):04}", "object": "chat.completion.chunk",
                     "created": 0, "model": model, **part}  # fmt: skip
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if self.failure is not None:
            return await self._fail(request, anthropic=True)
        limited = self._limit(anthropic=True)
        if limited is not None:
            return limited
        step = self._step(body)
        if step is None:
            block: dict[str, Any] = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": self.final}
            stop = "end_turn"
        else:
            block = {
                "type": "tool_use",
                "id": f"toolu_{len(self.requests):04}",
                "name": step.name,
                "input": {},
            }
            delta = {"type": "input_json_delta", "partial_json": json.dumps(step.input)}
            stop = "tool_use"
        usage = self._usage(str(body.get("model", "claude")))
        message = {
            "id": f"msg_{len(self.requests):04}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage["input_tokens"],
                "cache_read_input_tokens": usage["cache_read_tokens"],
                "cache_creation_input_tokens": usage["cache_write_tokens"],
                "output_tokens": 1,  # so far: message_delta has the final count
            },
        }
        if not body.get("stream"):  # one JSON answer (aider's commit messages ask this way)
            whole = {"text": self.final} if step is None else {"input": step.input}
            final = {**message["usage"], "output_tokens": usage["output_tokens"]}
            return web.json_response(
                {**message, "content": [{**block, **whole}], "stop_reason": stop, "usage": final}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in (
            {"type": "message_start", "message": message},
            {"type": "content_block_start", "index": 0, "content_block": block},
            {"type": "content_block_delta", "index": 0, "delta": delta},
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
            {"type": "message_stop"},
        ):
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response


async def serve(server: ModelServer) -> AsyncIterator[ModelServer]:
    """Run `server` on a local port (its `url`) until the generator is closed."""
    app = web.Application()
    app.router.add_post("/v1/messages", server.messages)
    app.router.add_post("/v1/chat/completions", server.chat_completions)
    app.router.add_post("/api/chat", server.ollama_chat)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)  # hung answers end at once
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
