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
Each request is recorded.
"""

from __future__ import annotations

import asyncio
import json
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

    plan: list[ToolCall]
    final: str = "Done."
    # Instead of answering: an HTTP status (429, 500) with the provider's error body, "drop" (the
    # stream starts, then the connection is cut) or "hang" (no answer at all).
    failure: int | str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of each request, in order
    url: str = ""

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

    def _step(self, body: dict[str, Any]) -> ToolCall | None:
        """The plan's next step: as many steps are done as the conversation holds tool results."""
        if not body.get("tools"):
            return None  # a side request (a title, a summary): text will do
        done = 0
        for message in body.get("messages", []):
            content = message.get("content")
            blocks = content if isinstance(content, list) else []
            done += message.get("role") == "tool" or any(b.get("type") == "tool_result" for b in blocks)
        return self.plan[done] if done < len(self.plan) else None

    async def _body(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        return body

    async def ollama_chat(self, request: web.Request) -> web.StreamResponse:
        """A turn of Ollama's chat API: text only (aider sends no tools), streamed as JSON lines."""
        body = await self._body(request)
        done = {"model": body.get("model"), "created_at": "2026-01-01T00:00:00Z", "done": True,
                "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1}  # fmt: skip
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
            usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            return web.json_response(
                {"id": "chatcmpl", "object": "chat.completion", "created": 0, "model": body.get("model"),
                 "choices": [choice], "usage": usage}
            )  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunks = [*((delta, None) for delta in deltas), ({}, finish)]
        for delta, reason in chunks:
            chunk = {
                "id": f"chatcmpl-{len(self.requests):04}",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body.get("model", "model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if self.failure is not None:
            return await self._fail(request, anthropic=True)
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
        message = {
            "id": f"msg_{len(self.requests):04}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        if not body.get("stream"):  # one JSON answer (aider's commit messages ask this way)
            whole = {"text": self.final} if step is None else {"input": step.input}
            return web.json_response({**message, "content": [{**block, **whole}], "stop_reason": stop})
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
                "usage": {"output_tokens": 1},
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
