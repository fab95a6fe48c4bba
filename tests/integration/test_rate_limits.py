"""Provider rate limits with the real agent CLIs: a short one is waited out, a long one parks the polecat.

The model server answers 429 for a while, with the provider's own body and
reset headers (Anthropic's subscription usage limit; OpenAI's requests-per-
minute limit). The worker's gateway holds a request through a limit of up to
GASTOWN_RATE_LIMIT_HOLD seconds (2 s here, so that a test's long limit is
8 s rather than hours: the workflow test holds a three-hour one on the
time-skipping server).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import libtmux
import pytest
from git import Repo
from temporalio.client import Client

from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import Polecat
from tests.helpers import GitRig, parsed, rig, rig_manifest, terminate_running, wait_until
from tests.integration.test_agents import (
    WHOLE_FILE,
    agent_polecat,
    commit,
    program,
    provider,
    second_commit,
)
from tests.model_server import ModelServer
from worker.main import build_worker

HOLD = 2.0  # seconds the gateway holds a request through a limit, in these tests
LONG = 8.0  # a limit longer than that: the polecat is parked


@pytest.fixture
async def worker(client: Client, settings: Settings, tmux: libtmux.Server) -> AsyncIterator[None]:
    """The test's worker, its gateway holding requests through limits of up to HOLD seconds."""
    settings.rate_limit_hold = HOLD
    async with build_worker(client, settings):
        yield
    await terminate_running(client, settings.task_queue)


pytestmark = pytest.mark.usefixtures("worker")

# agent -> (its plan, the worker's URL variable and path for its provider, its agentConfig)
AGENTS: dict[str, tuple[list[Any], str, str, dict[str, Any]]] = {
    "claude-code": ([commit("claude"), second_commit("claude")], "ANTHROPIC_BASE_URL", "", {}),
    "opencode": (
        [commit("opencode"), second_commit("opencode")],
        "OPENAI_BASE_URL",
        "/v1",
        {"provider": "openai", "model": "test-model"},
    ),
    "aider": ([], "OPENAI_API_BASE", "/v1", {"provider": "openai", "model": "test-model"}),
}


def server_for(agent: str, limit_after: int, limit_for: float) -> ModelServer:
    plan = AGENTS[agent][0]
    final = WHOLE_FILE if agent == "aider" else "Done."
    return ModelServer(plan, final=final, limit_after=limit_after, limit_for=limit_for)


async def test_a_short_limit_is_waited_out_and_the_agent_never_sees_it(
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A limit of 1 s, within the gateway's hold: claude's request waits and is answered; the polecat
    is never parked, and claude's output says nothing of a limit."""
    server = server_for("claude-code", limit_after=1, limit_for=1.0)
    async with provider(server, monkeypatch, tmp_path, "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"):
        await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
        await reconciler.apply(agent_polecat("nux", rig_name, "claude-code"))
        done = await wait_until(lambda: ended(reconciler, "nux"), "nux to end", timeout=90)
    assert done.status is not None
    assert done.status.phase == "Succeeded", done.status.message
    assert server.limited, "the model server never limited a request"
    assert done.status.resumes == 0 and not [c for c in done.status.conditions if c.type == "RateLimited"]
    assert done.status.log_file and "429" not in Path(done.status.log_file).read_text()


@pytest.mark.parametrize("agent", list(AGENTS))
async def test_a_long_limit_parks_the_polecat_and_resumes_its_agent_after_the_reset(
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    agent: str,
) -> None:
    """A limit longer than the gateway holds: the agent is stopped and the polecat Pending, condition
    RateLimited naming the provider and the reset. At the reset it is resumed in the same worktree
    and, for claude-code and opencode, the same session (the model sees the earlier turns); its
    earlier commit is kept and it finishes."""
    _, url_variable, path, config = AGENTS[agent]
    limit_after = 0 if agent == "aider" else 1  # aider's first turn is its whole edit
    server = server_for(agent, limit_after, LONG)
    async with provider(server, monkeypatch, tmp_path, url_variable, key_variable(url_variable), path):
        await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
        await reconciler.apply(parsed(Polecat, agent_polecat("nux", rig_name, agent, **config).to_wire()))

        async def parked() -> Polecat | None:
            found = await reconciler.get(Polecat, "default", "nux")
            limited = found.status and [c for c in found.status.conditions if c.type == "RateLimited"]
            return found if limited else None

        waiting = await wait_until(parked, "the polecat to be parked", timeout=90)
        assert waiting.status is not None
        assert waiting.status.phase == "Pending", waiting.status.message
        provider_name = "anthropic" if agent == "claude-code" else "openai"
        assert f"rate limited by {provider_name} (HTTP 429) until" in waiting.status.message
        if agent != "aider":
            assert (
                Repo(git_rig.checkout).commit("polecat/nux").message.strip() == f"gt-7: {program(agent)}.txt"
            )
        done = await wait_until(lambda: ended(reconciler, "nux"), "nux to be resumed and end", timeout=120)
    assert done.status is not None
    assert done.status.phase == "Succeeded", done.status.message
    assert done.status.resumes == 1
    (limited,) = [c for c in done.status.conditions if c.type == "RateLimited"]
    assert (limited.status, limited.reason) == ("False", "RateLimitReset")
    after = [body for body in server.requests if body.get("tools")][limit_after:]
    if agent != "aider":
        assert "tool" in json.dumps(after[-1]["messages"])  # the resumed session holds the earlier turns
        assert {f"{program(agent)}.txt", "more.txt"} <= set(git_rig.files_on("polecat/nux"))
    else:
        assert git_rig.files_on("polecat/nux")["aider.txt"] == "made by aider\n"


def key_variable(url_variable: str) -> str:
    return "ANTHROPIC_API_KEY" if url_variable.startswith("ANTHROPIC") else "OPENAI_API_KEY"


async def ended(reconciler: Reconciler, name: str) -> Polecat | None:
    found = await reconciler.get(Polecat, "default", name)
    return found if found.status and found.status.phase in ("Succeeded", "Failed") else None
