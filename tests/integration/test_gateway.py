"""The model gateway for real: HTTP through it to the test's model server, and its one port per home."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launch.gateway import PLACEHOLDER_KEY, agent_directory, host_secret, mint
from launch.usage import GATEWAY_LEDGER, LedgerReader
from tests.model_server import ModelServer, serve
from worker.gateway import serve_gateway

AGENT = "default/gt-default-nux-00000001"


@pytest.fixture
async def model() -> AsyncIterator[ModelServer]:
    async for server in serve(ModelServer([])):
        yield server


def agent_home(tmp_path: Path) -> Path:
    """A home with the agent directory of AGENT, as start_agent makes it."""
    home = tmp_path / "home"
    agent_directory(home, AGENT).mkdir(parents=True)
    return home


async def ask(url: str, **body: Any) -> tuple[int, bytes]:
    """One streamed Messages request, as claude-code sends it, with the gateway's placeholder key."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/messages",
            json={"model": "claude-x", "stream": True, "messages": [], **body},
            headers={"x-api-key": PLACEHOLDER_KEY, "anthropic-version": "2023-06-01"},
        ) as answer,
    ):
        return answer.status, await answer.read()


async def test_a_request_goes_out_with_the_workers_key_and_its_usage_is_counted(
    tmp_path: Path, model: ModelServer
) -> None:
    """The agent holds a placeholder; the provider gets the worker's key; the stream comes back whole
    and the polecat's ledger has exactly the usage the provider reported."""
    environ = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-worker"}
    home = agent_home(tmp_path)
    async with serve_gateway(home, environ) as gateway:
        token = mint(gateway.secret, AGENT)
        status, stream = await ask(f"{gateway.url}/{token}/anthropic")
    assert status == 200 and b"event: message_stop" in stream
    assert model.headers[0]["x-api-key"] == "sk-worker"
    assert PLACEHOLDER_KEY not in str(model.headers)
    (record,) = LedgerReader(agent_directory(home, AGENT) / GATEWAY_LEDGER).read()
    (reported,) = model.reported
    assert record.model_dump(include=set(reported)) == reported


async def test_a_token_the_gateway_did_not_mint_is_refused(tmp_path: Path, model: ModelServer) -> None:
    home = agent_home(tmp_path)
    async with serve_gateway(home, {"ANTHROPIC_BASE_URL": model.url}) as gateway:
        status, body = await ask(f"{gateway.url}/{mint(b'not-this-host', AGENT)}/anthropic")
    assert status == 403 and b"did not issue the token" in body
    assert model.requests == []


async def test_the_workers_of_a_home_share_its_gateway_port(tmp_path: Path, model: ModelServer) -> None:
    """A second worker of the home serves the same port; when the first stops the agent's URL still
    answers; a later worker takes the port again."""
    environ = {"ANTHROPIC_BASE_URL": model.url}
    home = agent_home(tmp_path)
    token = mint(host_secret(home), AGENT)
    first = serve_gateway(home, environ)
    one = await first.__aenter__()
    async with serve_gateway(home, environ) as two:
        assert two.url == one.url
        await first.__aexit__(None, None, None)
        assert (await ask(f"{two.url}/{token}/anthropic"))[0] == 200
    async with serve_gateway(home, environ) as three:
        assert three.url == one.url


async def test_a_port_another_home_serves_is_left_to_it(tmp_path: Path, model: ModelServer) -> None:
    environ = {"ANTHROPIC_BASE_URL": model.url}
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    async with serve_gateway(theirs, environ) as other:
        mine.mkdir()
        (mine / "gateway.json").write_text((theirs / "gateway.json").read_text())
        async with serve_gateway(mine, environ) as own:
            assert own.url != other.url
