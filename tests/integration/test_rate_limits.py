"""Provider rate limits and caps with the real agent CLIs: a short limit is waited out, a long one
parks the polecat, and a provider's town-wide cap holds a convoy of thirty to three at once.

The model server answers 429 for a while, with the provider's own body and
reset headers (Anthropic's subscription usage limit; OpenAI's requests-per-
minute limit). The worker's gateway holds a request through a limit of up to
GASTOWN_RATE_LIMIT_HOLD seconds (2 s here, so that a test's long limit is
8 s rather than hours: the workflow test holds a three-hour one on the
time-skipping server).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import libtmux
import pytest
from git import Repo
from temporalio.client import Client

from bridge.reconcile import Reconciler
from client.settings import Settings
from client.visibility import provider_gates
from crds import Convoy, Polecat
from tests.helpers import (
    GitRig,
    convoy_manifest,
    parsed,
    reach,
    rig,
    rig_manifest,
    terminate_running,
    wait_until,
)
from tests.integration.test_agents import (
    WHOLE_FILE,
    agent_polecat,
    commit,
    program,
    provider,
)
from tests.integration.test_convoy import town
from tests.model_server import ModelServer, ToolCall
from worker.main import build_worker

HOLD = 2.0  # seconds the gateway holds a request through a limit, in these tests
LONG = 8.0  # a limit longer than that: the polecat is parked


@pytest.fixture
async def worker(client: Client, settings: Settings, tmux: libtmux.Server) -> AsyncIterator[None]:
    """The test's worker, its gateway holding requests through limits of up to HOLD seconds."""
    settings.rate_limit_hold = HOLD
    settings.provider_limits = {"anthropic": 3}
    async with build_worker(client, settings):
        yield
    await terminate_running(client, settings.task_queue)


pytestmark = pytest.mark.usefixtures("worker")

# agent -> (its plan, the worker's URL variable and path for its provider, its agentConfig)
AGENTS: dict[str, tuple[list[Any], str, str, dict[str, Any]]] = {
    "claude-code": ([commit("claude"), commit("claude", "more.txt", "more")], "ANTHROPIC_BASE_URL", "", {}),
    "opencode": (
        [commit("opencode"), commit("opencode", "more.txt", "more")],
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


def spans_of(server: ModelServer) -> list[tuple[str, float, float]]:
    """Each polecat's runs of answered requests to the model (a limited request ends one), from the
    prompt its requests carry: each lies within the life of its agent's process."""
    spans: list[tuple[str, float, float]] = []
    open_spans: dict[str, int] = {}  # polecat -> the index in `spans` of its run still going on
    for index, (body, moment) in enumerate(zip(server.requests, server.arrived, strict=True)):
        found = re.search(r"You are polecat (\S+), working", json.dumps(body.get("messages")))
        if not found:
            continue
        name = found[1]
        if index in server.limited:
            open_spans.pop(name, None)
        elif name in open_spans:
            _, first, _ = spans[open_spans[name]]
            spans[open_spans[name]] = (name, first, moment)
        else:
            open_spans[name] = len(spans)
            spans.append((name, moment, moment))
    return spans


def most_at_once(spans: list[tuple[str, float, float]]) -> int:
    edges = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


@pytest.mark.timeout(600)
async def test_a_convoy_of_30_keeps_to_the_providers_cap_and_a_limit_holds_back_new_starts(
    reconciler: Reconciler,
    settings: Settings,
    git_rig: GitRig,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Thirty claude-code polecats, a town-wide cap of 3 on anthropic (GASTOWN_PROVIDER_LIMITS): never
    more than 3 talk to the model at once, and the cap is reached. When one meets a long limit the
    gate pauses: no polecat starts until the reset; then all finish."""
    # Each agent works a few seconds between its two turns, so that three are at work at once.
    slow = ToolCall(
        "Bash", {**commit("claude").input, "command": f"sleep 3 && {commit('claude').input['command']}"}
    )
    server = ModelServer([slow], limit_after=12, limit_for=LONG)
    beads = [{"id": f"gt-{n}"} for n in range(1, 31)]
    async with provider(server, monkeypatch, tmp_path, "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"):
        await town(reconciler, git_rig, rig_name, beads, tmp_path / "issues.jsonl")
        manifest = convoy_manifest("wave", rig_name, [str(bead["id"]) for bead in beads])
        manifest["spec"]["polecatTemplate"] = {"agent": "claude-code"}
        await reconciler.apply(parsed(Convoy, manifest))

        async def paused() -> datetime | None:
            gates = await provider_gates(reconciler.client)
            return next((gate.paused_until for gate in gates if gate.provider == "anthropic"), None)

        await wait_until(paused, "the anthropic gate to pause", timeout=120)
        pause_seen = time.time()
        done = await reach(reconciler, Convoy, "wave", "Completed", "Failed", timeout=400)
    assert done.status is not None
    assert done.status.phase == "Completed", done.status.message
    spans = spans_of(server)
    assert len({name for name, _, _ in spans}) == 30
    assert most_at_once(spans) == 3
    assert server.limit_ends is not None
    # Admitted before the pause, an agent may still be starting: a few seconds' grace.
    started_while_paused = [name for name, first, _ in spans if pause_seen + 3 < first < server.limit_ends]
    assert started_while_paused == []
    polecats = await reconciler.list(Polecat, "default")
    assert sum(p.status.resumes for p in polecats if p.status) >= 1  # the limited ones resumed
