"""A model provider the tests control: the Anthropic Messages API, streamed, answering with a script.

No language model runs here, so the real agent CLIs are driven by this
server instead. It speaks the wire protocol they speak (`POST /v1/messages`
with `stream: true`, answered as server-sent events: message_start,
content_block_start/delta/stop, message_delta, message_stop) and answers each
turn with the next step of a plan: a tool call (the agent runs it with its own
tools) or, at the end, text. Each request is recorded.
"""

from __future__ import annotations

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
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def _step(self, body: dict[str, Any]) -> ToolCall | None:
        if not body.get("tools"):
            return None  # a side request (a title, a summary): text will do
        done = sum(
            1
            for message in body.get("messages", [])
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        )
        return self.plan[done] if done < len(self.plan) else None

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
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
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
