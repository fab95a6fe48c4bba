"""The real agent CLIs in local polecats, driven by a model server the test controls.

The CLIs are the ones users install, pinned in agents/package.json and
installed by `make test`; the model is tests/model_server.py, speaking the
provider's wire protocol and answering with a script: make a change with the
agent's own tools, commit it, finish.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from git import Repo

from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import Polecat, Witness
from crds.usage import Usage
from tests.helpers import GitRig, parsed, reach, rig, rig_manifest, wait_until, witness_manifest
from tests.model_server import ModelServer, ToolCall, serve

pytestmark = pytest.mark.usefixtures("worker")


def program(agent: str) -> str:
    """The program an agent runs as (claude-code's is `claude`)."""
    return {"claude-code": "claude"}.get(agent, agent)


def commit(agent: str, file: str = "", text: str = "") -> ToolCall:
    """A step of the plan: the agent's own shell tool writes `file` (`<agent>.txt`, saying who made
    it) and commits it."""
    file, text = file or f"{agent}.txt", text or f"made by {agent}"
    command = f"printf '{text}\\n' > {file} && git add {file} && git commit -q -m 'gt-7: {file}'"
    return ToolCall("Bash" if agent == "claude" else "bash", {"command": command, "description": "commit"})


@contextlib.asynccontextmanager
async def provider(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, key: str, path: str = ""
) -> AsyncIterator[ModelServer]:
    """`server` running, named in the worker's environment as a provider is: its base URL in `url`
    (plus `path`), a dummy key in `key`; and a HOME of its own (the CLI's files, not the user's)."""
    monkeypatch.setenv("HOME", str(tmp_path / "agent-home"))
    async for running in serve(server):
        monkeypatch.setenv(url, f"{running.url}{path}")
        monkeypatch.setenv(key, "sk-test-not-a-key")
        yield running


def anthropic_api(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> contextlib.AbstractAsyncContextManager[ModelServer]:
    """The Anthropic API, as the worker's environment names it (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY)."""
    return provider(server, monkeypatch, tmp_path, "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")


@pytest.fixture
async def anthropic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[ModelServer]:
    async with anthropic_api(ModelServer([commit("claude")]), monkeypatch, tmp_path) as server:
        yield server


def counted(polecat: Polecat, server: ModelServer) -> Usage:
    """The polecat's usage, once checked to be exactly what the model server reported, by model."""
    assert polecat.status is not None and polecat.status.usage is not None, "no usage in the status"
    return as_reported(polecat.status.usage, server)


def as_reported(usage: Usage, server: ModelServer) -> Usage:
    """`usage`, once checked to be exactly what the model server reported, by model."""
    assert server.reported, "the model server reported no usage"
    by_model: dict[str, list[dict[str, Any]]] = {}
    for report in server.reported:
        by_model.setdefault(report["model"].split("/")[-1], []).append(report)
    seen = {model.model.split("/")[-1]: model for model in usage.models}
    assert set(seen) == set(by_model)
    for name, reports in by_model.items():
        counts = {key: sum(report[key] for report in reports) for key in reports[0] if key != "model"}
        assert seen[name].model_dump(include=set(counts)) == counts, name
        assert seen[name].requests == len(reports)
    assert usage.requests == len(server.reported)
    return usage


def agent_polecat(name: str, rig: str, agent: str, **config: Any) -> Polecat:
    return parsed(
        Polecat,
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Polecat",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "rig": rig,
                "desiredState": "Working",
                "beadID": "gt-7",
                "taskDescription": "Add a file saying who made it, and commit it.",
                "agent": agent,
                "agentConfig": config,
            },
        },
    )


async def succeeds(
    reconciler: Reconciler,
    settings: Settings,
    git_rig: GitRig,
    rig_name: str,
    name: str,
    agent: str,
    timeout: float = 90,
    **config: Any,
) -> Polecat:
    """The polecat `name` running the real `agent` on the rig, once it has Succeeded (within `timeout` s)."""
    assert settings.agents_bin and (settings.agents_bin / program(agent)).exists(), (
        "`make test` installs agents/"
    )
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
    await reconciler.apply(agent_polecat(name, rig_name, agent, **config))
    done = await reach(reconciler, Polecat, name, "Succeeded", "Failed", timeout=timeout)
    assert done.status is not None
    assert done.status.phase == "Succeeded", done.status.message
    return done


async def test_claude_code_commits_with_its_own_tools(
    reconciler: Reconciler, settings: Settings, git_rig: GitRig, rig_name: str, anthropic: ModelServer
) -> None:
    """A claude-code polecat: the real `claude` CLI asks the model, runs the Bash tool the model calls,
    and the commit it made is on the polecat's branch; the polecat Succeeds. Its status has the
    tokens the model server reported, and their cost at the model's list price."""
    model = "claude-sonnet-4-5-20250929"
    done = await succeeds(reconciler, settings, git_rig, rig_name, "nux", "claude-code", model=model)
    usage = counted(done, anthropic)
    price = (3, 15, 0.3, 3.75)  # USD per million: input, output, cache reads, cache writes
    counts = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)
    assert usage.cost_usd == pytest.approx(sum(n * p for n, p in zip(counts, price, strict=True)) / 1e6)
    assert usage.cost == f"${usage.cost_usd:.4f}"
    branch = Repo(git_rig.checkout).commit("polecat/nux")
    assert branch.message.strip() == "gt-7: claude.txt" and branch.author.name == "nux"
    assert git_rig.files_on("polecat/nux")["claude.txt"] == "made by claude\n"
    turns = [body for body in anthropic.requests if body.get("tools")]
    assert {body["model"] for body in turns} == {model}
    assert "Add a file saying who made it" in str(turns[0]["messages"])  # the task reached the model
    results = [
        block
        for message in turns[-1]["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert results and not results[0].get("is_error"), results


@pytest.mark.parametrize("failure", [429, 500, "drop"])
async def test_claude_code_fails_with_its_own_words_when_the_model_server_fails(
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    failure: int | str,
) -> None:
    """The model server answers 429, 500, or cuts the stream: claude retries as it does (bounded by
    CLAUDE_CODE_MAX_RETRIES from the worker's environment), then the polecat is Failed with claude's
    own error text in its message."""
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "1")
    async with anthropic_api(
        ModelServer([commit("claude")], failure=failure), monkeypatch, tmp_path
    ) as server:
        await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
        await reconciler.apply(agent_polecat("ace", rig_name, "claude-code"))
        done = await reach(reconciler, Polecat, "ace", "Succeeded", "Failed", timeout=90)
        assert len(server.requests) >= 2  # it tried again
    assert done.status is not None and done.status.phase == "Failed"
    assert done.status.exit_code not in (None, 0)
    assert "API Error" in done.status.message, done.status.message
    if failure != "drop":
        assert str(failure) in done.status.message


async def test_a_hung_agent_is_caught_by_the_witness(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The model server never answers: claude waits in silence, the Witness finds the polecat Stuck
    and, as its spec says, terminates it."""
    async with anthropic_api(ModelServer([], failure="hang"), monkeypatch, tmp_path) as server:
        await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
        await reconciler.apply(agent_polecat("toast", rig_name, "claude-code"))
        # The Witness comes once claude has asked (a slow machine can take longer than the threshold
        # just to start claude), so what it finds is an agent waiting in silence.
        await wait_until(lambda: server.requests, "claude to ask the model", timeout=60)
        witness = witness_manifest(rig_name, stuckThreshold="3s", actions={"onStuck": "terminate"})
        await reconciler.apply(parsed(Witness, witness))
        done = await reach(reconciler, Polecat, "toast", "Terminated", timeout=60)
    assert done.status is not None
    (how,) = [c for c in done.status.conditions if c.type == "Terminated"]
    assert how.reason == "WitnessTerminated"
    found = await reconciler.get(Witness, "default", "witness")
    assert found.status is not None
    (alert,) = found.status.alerts
    assert (alert.polecat, alert.type) == ("default/toast", "Stuck") and "terminating it" in alert.message


@pytest.fixture
async def openai(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[ModelServer]:
    """An OpenAI-compatible API, as the worker's environment names it (OPENAI_BASE_URL, OPENAI_API_KEY)."""
    server = ModelServer([commit("opencode")])
    async with provider(server, monkeypatch, tmp_path, "OPENAI_BASE_URL", "OPENAI_API_KEY", "/v1") as running:
        yield running


async def test_opencode_commits_with_its_own_tools(
    reconciler: Reconciler, settings: Settings, git_rig: GitRig, rig_name: str, openai: ModelServer
) -> None:
    """An opencode polecat (provider openai): the real `opencode run` asks the model at OPENAI_BASE_URL,
    runs the bash tool it calls, and its commit is on the polecat's branch; the key never left the env.
    Its status has the tokens the server reported; the model has no known price, so the cost is unknown."""
    done = await succeeds(
        reconciler, settings, git_rig, rig_name, "slit", "opencode", provider="openai", model="test-model"
    )
    usage = counted(done, openai)
    assert usage.cost_usd is None and usage.cost == "unknown" and usage.total_tokens > 0
    assert git_rig.files_on("polecat/slit")["opencode.txt"] == "made by opencode\n"
    assert Repo(git_rig.checkout).commit("polecat/slit").message.strip() == "gt-7: opencode.txt"
    turns = [body for body in openai.requests if body.get("tools")]
    assert {body["model"] for body in turns} == {"test-model"}
    assert "Add a file saying who made it" in str(turns[0]["messages"])


# aider sends no tools: it asks for edits in plain text ("whole" format for a model it does not know).
WHOLE_FILE = "aider.txt\n```\nmade by aider\n```\n"


@pytest.fixture
async def openai_text(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[ModelServer]:
    """An OpenAI-compatible API that answers every turn with the same whole-file edit."""
    server = ModelServer([], final=WHOLE_FILE)
    async with provider(server, monkeypatch, tmp_path, "OPENAI_API_BASE", "OPENAI_API_KEY", "/v1") as running:
        yield running


async def test_aider_commits_its_edit(
    reconciler: Reconciler, settings: Settings, git_rig: GitRig, rig_name: str, openai_text: ModelServer
) -> None:
    """An aider polecat: the real `aider --message` asks the model at OPENAI_API_BASE, applies the edit
    it answers and commits it itself, as the polecat; the polecat Succeeds, its usage counted."""
    done = await succeeds(
        reconciler, settings, git_rig, rig_name, "rictus", "aider", 120, provider="openai", model="test-model"
    )
    counted(done, openai_text)
    assert git_rig.files_on("polecat/rictus")["aider.txt"] == "made by aider\n"
    assert Repo(git_rig.checkout).commit("polecat/rictus").author.name == "rictus"
    assert ".gitignore" not in git_rig.files_on("polecat/rictus")
    assert {body["model"] for body in openai_text.requests} == {"test-model"}


@pytest.mark.parametrize("failure", [429, 500])
async def test_opencode_fails_with_its_own_words_when_the_model_server_fails(
    reconciler: Reconciler,
    git_rig: GitRig,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    failure: int,
) -> None:
    """The model server answers 429 or 500 (saying when to retry, as providers do): opencode retries
    as it does, gives up, and the polecat is Failed with opencode's own error text."""
    server = ModelServer([commit("opencode")], failure=failure)
    async with provider(server, monkeypatch, tmp_path, "OPENAI_BASE_URL", "OPENAI_API_KEY", "/v1"):
        await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
        await reconciler.apply(agent_polecat("ace", rig_name, "opencode", provider="openai", model="m"))
        done = await reach(reconciler, Polecat, "ace", "Succeeded", "Failed", timeout=90)
        assert len(server.requests) >= 2  # it tried again
    assert done.status is not None and done.status.phase == "Failed"
    assert done.status.exit_code not in (None, 0)
    assert f"the test's model server answers {failure}" in done.status.message, done.status.message


async def test_aider_that_gives_up_leaves_its_polecat_failed(
    reconciler: Reconciler, git_rig: GitRig, rig_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The model server answers 429 to every turn: aider retries for about a minute, gives up and
    exits 0 without a commit. A named agent's exit 0 proves nothing: the polecat is Failed with
    reason NoCommits and aider's own words."""
    server = ModelServer([], final=WHOLE_FILE, failure=429)
    async with provider(server, monkeypatch, tmp_path, "OPENAI_API_BASE", "OPENAI_API_KEY", "/v1"):
        await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
        await reconciler.apply(agent_polecat("ace", rig_name, "aider", provider="openai", model="m"))
        done = await reach(reconciler, Polecat, "ace", "Succeeded", "Failed", timeout=150)
    assert done.status is not None and done.status.phase == "Failed"
    (failed,) = [c for c in done.status.conditions if c.type == "Failed"]
    assert failed.reason == "NoCommits"
    assert "aider exited 0 but left no commit on polecat/ace" in done.status.message
    assert "rate limited you" in done.status.message, done.status.message


def sampling(body: dict[str, Any]) -> tuple[object, object]:
    """(max tokens, temperature) of a request, wherever its protocol puts them."""
    options = body.get("options") or {}  # Ollama's
    tokens = body.get("max_tokens") or body.get("max_completion_tokens") or options.get("num_predict")
    return tokens, body.get("temperature", options.get("temperature"))


# agent, provider -> the worker's variables naming the provider (its URL, with this path; its key).
ROUTES = {
    ("claude-code", "litellm"): ("LITELLM_PROXY_API_BASE", "/v1", "LITELLM_PROXY_API_KEY"),
    ("opencode", "anthropic"): ("ANTHROPIC_BASE_URL", "", "ANTHROPIC_API_KEY"),
    ("opencode", "litellm"): ("LITELLM_PROXY_API_BASE", "", "LITELLM_PROXY_API_KEY"),
    ("opencode", "ollama"): ("OLLAMA_HOST", "", None),
    ("aider", "anthropic"): ("ANTHROPIC_BASE_URL", "", "ANTHROPIC_API_KEY"),
    ("aider", "litellm"): ("LITELLM_PROXY_API_BASE", "/v1", "LITELLM_PROXY_API_KEY"),
    ("aider", "ollama"): ("OLLAMA_HOST", "", None),
}


@pytest.mark.parametrize(("agent", "provider_name"), list(ROUTES))
async def test_each_agent_reaches_each_provider(
    reconciler: Reconciler,
    settings: Settings,
    git_rig: GitRig,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    agent: str,
    provider_name: str,
    tmux_argv: Path,
) -> None:
    """Each agent, given agentConfig.provider, finds the provider where the worker's environment says
    (its standard variables), with the key from there, and commits; maxTokens and temperature reach
    the model where the agent can send them. The key is on no tmux command line, not even when the
    agent reads it under another name (claude-code's ANTHROPIC_AUTH_TOKEN, from LITELLM_PROXY_API_KEY)."""
    url_variable, path, key_variable = ROUTES[(agent, provider_name)]
    server = ModelServer([], final=WHOLE_FILE) if agent == "aider" else ModelServer([commit(program(agent))])
    monkeypatch.setenv("HOME", str(tmp_path / "agent-home"))
    for variable in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    if key_variable:
        monkeypatch.setenv(key_variable, "sk-from-the-worker")
    config: dict[str, Any] = {"provider": provider_name, "model": "test-model"}
    if agent != "claude-code":
        config |= {"maxTokens": 321, "temperature": 0.25}
    async for running in serve(server):
        url = running.url.removeprefix("http://") if provider_name == "ollama" else running.url
        monkeypatch.setenv(url_variable, f"{url}{path}")  # OLLAMA_HOST without a scheme, as Ollama's own
        await succeeds(reconciler, settings, git_rig, rig_name, "slit", agent, 120, **config)
    assert f"{program(agent)}.txt" in git_rig.files_on("polecat/slit")
    turns = [body for body in server.requests if body.get("tools") or agent == "aider"]
    assert turns and {body["model"].split("/")[-1] for body in turns} == {"test-model"}
    if key_variable:
        assert all(
            any("sk-from-the-worker" in value for value in headers.values()) for headers in server.headers
        )
    assert "respawn-pane" in tmux_argv.read_text()  # the agent was started through the logged tmux
    assert "sk-from-the-worker" not in tmux_argv.read_text()
    if agent != "claude-code":
        assert sampling(turns[0]) == (321, 0.25)


async def test_claude_code_over_its_budget_is_stopped_and_resumes_its_session_when_raised(
    reconciler: Reconciler,
    settings: Settings,
    git_rig: GitRig,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A budget the first answer spends: claude makes its first commit, is stopped (or refused by the
    gateway) and the polecat is Failed (BudgetExceeded), the commit kept. A raised budget resumes the
    same claude session (`--resume`): the model sees the earlier turns, and the work goes on to the
    second commit. The usage is the server's, each answer counted once."""
    server = ModelServer([commit("claude"), commit("claude", "more.txt", "more")])
    async with anthropic_api(server, monkeypatch, tmp_path):
        await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
        manifest = agent_polecat("nux", rig_name, "claude-code").to_wire()
        manifest["spec"]["budget"] = {"maxTokens": 100}
        await reconciler.apply(parsed(Polecat, manifest))
        failed = await reach(reconciler, Polecat, "nux", "Failed", "Succeeded", timeout=90)
        assert failed.status is not None
        assert "budget spent" in failed.status.message, failed.status.message
        assert Repo(git_rig.checkout).commit("polecat/nux").message.strip() == "gt-7: claude.txt"
        asked = len(server.requests)

        manifest["spec"]["budget"] = {"maxTokens": 1_000_000}
        await reconciler.apply(parsed(Polecat, manifest))

        async def second_attempt_ended() -> Polecat | None:
            found = await reconciler.get(Polecat, "default", "nux")
            ended = (
                found.status and found.status.restarts == 1 and found.status.phase in ("Succeeded", "Failed")
            )
            return found if ended else None

        done = await wait_until(second_attempt_ended, "the second attempt to end", timeout=90)
    assert done.status is not None
    assert done.status.phase == "Succeeded", done.status.message
    resumed = next(body for body in server.requests[asked:] if body.get("tools"))
    assert "tool_result" in json.dumps(resumed["messages"])  # the earlier turns, in the same session
    assert {"claude.txt", "more.txt"} <= set(git_rig.files_on("polecat/nux"))
    counted(done, server)


async def test_a_nudge_resumes_a_succeeded_claude_code_in_its_session(
    reconciler: Reconciler,
    settings: Settings,
    git_rig: GitRig,
    rig_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """claude-code makes its commit and the polecat Succeeds; a nudge resumes the same claude
    session (`--resume`) with the follow-up: the model sees the earlier turns and the follow-up's
    words, the agent makes a second commit on the branch, the first kept, and the polecat is
    Succeeded again with the follow-up's outcome in status.conversation."""
    server = ModelServer([commit("claude"), None, commit("claude", "tests.txt", "tests")], follow_ups=True)
    async with anthropic_api(server, monkeypatch, tmp_path):
        await reconciler.apply(rig(rig_manifest(rig_name, git_rig)))
        await reconciler.apply(agent_polecat("nux", rig_name, "claude-code"))
        first = await reach(reconciler, Polecat, "nux", "Succeeded", "Failed", timeout=90)
        assert first.status is not None
        assert first.status.phase == "Succeeded", first.status.message
        asked = len(server.requests)

        what = await reconciler.update(Polecat, "default", "nux", "follow_up", "Also add tests.txt, please.")
        assert what == "the agent's session is resumed with it"

        async def followed_up() -> Polecat | None:
            found = await reconciler.get(Polecat, "default", "nux")
            status = found.status
            return (
                found
                if status and status.follow_ups == 1 and status.phase in ("Succeeded", "Failed")
                else None
            )

        done = await wait_until(followed_up, "the follow-up's run to end", timeout=90)
    assert done.status is not None
    assert done.status.phase == "Succeeded", done.status.message
    resumed = next(body for body in server.requests[asked:] if body.get("tools"))
    sent = json.dumps(resumed["messages"])
    assert "tool_result" in sent and "Also add tests.txt, please." in sent  # one session, the follow-up in it
    assert {"claude.txt", "tests.txt"} <= set(git_rig.files_on("polecat/nux"))
    (entry,) = done.status.conversation
    assert (entry.outcome, entry.message) == ("Succeeded", "Also add tests.txt, please.")
