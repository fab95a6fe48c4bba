"""What each agent's command line is, and what each agentConfig field becomes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.beads import Bead
from crds.polecat import PolecatSpec
from launch.agents import AgentCommand, Session, agent_command, prompt_for

PROMPT = 'fix it"; rm -rf / #'


def spec(agent: str, **config: Any) -> PolecatSpec:
    return PolecatSpec.model_validate(
        {
            "rig": "r",
            "desiredState": "Working",
            "beadID": "gt-1",
            "agent": agent,
            "agentConfig": config or None,
        }
    )


AGENT_DIR = "/home/polecat/.gastown"
# Every provider's endpoint set in the worker's environment, as a user would set them.
WORKER = {
    "ANTHROPIC_BASE_URL": "http://anthropic.internal:8080",
    "OPENAI_BASE_URL": "http://openai.internal/v1",
    "LITELLM_PROXY_API_BASE": "http://litellm.internal:4000",
    "OLLAMA_HOST": "ollama.internal:11434",  # Ollama's own form: no scheme
    "ANTHROPIC_API_KEY": "sk-secret",
}


def command_for(agent: str, **config: Any) -> AgentCommand:
    return agent_command(spec(agent, **config), PROMPT, WORKER, AGENT_DIR)


def test_claude_code_one_shot() -> None:
    """claude-code runs in --print mode with permissions skipped; model and maxTokens map; temperature cannot."""
    command = command_for("claude-code", model="claude-sonnet-4-20250514", maxTokens=4096, temperature=0.2)
    assert command.argv == [
        "claude", "--print", "--dangerously-skip-permissions", "--model", "claude-sonnet-4-20250514", PROMPT,
    ]  # fmt: skip
    assert command.env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "4096"
    assert command.env["IS_SANDBOX"] == "1"
    assert command.warnings == ["agentConfig.temperature is not supported by claude-code and was not applied"]


@pytest.mark.parametrize(
    ("agent", "provider", "env", "keys"),
    [
        ("claude-code", "anthropic", {"ANTHROPIC_BASE_URL": "http://anthropic.internal:8080"},
         {"ANTHROPIC_API_KEY": "ANTHROPIC_API_KEY"}),
        ("claude-code", "litellm", {"ANTHROPIC_BASE_URL": "http://litellm.internal:4000"},
         {"ANTHROPIC_AUTH_TOKEN": "LITELLM_PROXY_API_KEY"}),
        ("aider", "anthropic", {"ANTHROPIC_BASE_URL": "http://anthropic.internal:8080"},
         {"ANTHROPIC_API_KEY": "ANTHROPIC_API_KEY"}),
        ("aider", "openai", {"OPENAI_API_BASE": "http://openai.internal/v1"}, {"OPENAI_API_KEY": "OPENAI_API_KEY"}),
        ("aider", "litellm", {"LITELLM_PROXY_API_BASE": "http://litellm.internal:4000"},
         {"LITELLM_PROXY_API_KEY": "LITELLM_PROXY_API_KEY"}),
        ("aider", "ollama", {"OLLAMA_API_BASE": "http://ollama.internal:11434"}, {}),
        ("custom", "openai", {"GT_PROVIDER": "openai"}, {"OPENAI_API_KEY": "OPENAI_API_KEY"}),
    ],
)  # fmt: skip
def test_each_provider_reaches_the_agent_in_its_own_variables(
    agent: str, provider: str, env: dict[str, str], keys: dict[str, str]
) -> None:
    """The endpoint the worker's environment names for the provider is handed to the agent under the
    variable it reads; the key only by name (agent variable -> worker variable), never its value."""
    command = command_for(agent, provider=provider, model="m", command=["./a"] if agent == "custom" else None)
    assert {name: command.env[name] for name in env} == env
    assert command.keys == keys
    assert "sk-secret" not in str(command)


def test_aider_models_are_named_the_litellm_way() -> None:
    """aider runs non-interactively with --message; the model is `<LiteLLM prefix>/<model>`."""
    models = {
        provider: command_for("aider", provider=provider, model="m").argv[-3]
        for provider in ("anthropic", "openai", "litellm", "ollama")
    }
    assert models == {
        "anthropic": "anthropic/m", "openai": "openai/m", "litellm": "litellm_proxy/m", "ollama": "ollama_chat/m",
    }  # fmt: skip
    assert command_for("aider", provider="ollama", model="llama3").argv == [
        "aider", "--yes-always", "--no-check-update", "--no-analytics", "--no-show-release-notes", "--no-gitignore",
        "--model", "ollama_chat/llama3", "--message", PROMPT,
    ]  # fmt: skip


def test_aider_max_tokens_and_temperature_go_to_a_model_settings_file() -> None:
    """aider has no flag for them: they become the model's extra_params in a settings file in the
    agent directory, named on its command line."""
    command = command_for("aider", provider="openai", model="gpt-x", maxTokens=100, temperature=0.3)
    assert command.argv[-4:-2] == ["--model-settings-file", f"{AGENT_DIR}/aider.model.settings.yml"]
    settings = json.loads(command.files["aider.model.settings.yml"])
    assert settings == [{"name": "openai/gpt-x", "extra_params": {"max_tokens": 100, "temperature": 0.3}}]
    assert command.warnings == []
    assert command_for("aider", provider="openai", model="gpt-x").files == {}


def test_claude_code_other_providers_are_reported() -> None:
    """claude-code speaks only the Anthropic API: provider openai is reported, not silently dropped."""
    command = command_for("claude-code", provider="openai")
    assert any("provider openai is not supported by claude-code" in warning for warning in command.warnings)
    assert "ANTHROPIC_BASE_URL" not in command.env


def test_opencode_run() -> None:
    """opencode uses `run` (a bare positional prompt exits at once); the provider is declared in its
    config, its endpoint from the worker's environment, its key by reference only; nothing is fetched."""
    environ = {"OPENAI_API_BASE": "http://127.0.0.1:9999/v1", "OPENAI_API_KEY": "sk-secret"}
    command = agent_command(
        spec("opencode", provider="openai", model="gpt-test", maxTokens=10, temperature=0.4),
        PROMPT,
        environ,
        AGENT_DIR,
    )
    assert command.argv == ["opencode", "run", "--model", "gastown/gpt-test", PROMPT]
    config = json.loads(command.env["OPENCODE_CONFIG_CONTENT"])
    provider = config["provider"]["gastown"]
    assert provider["options"] == {"baseURL": "http://127.0.0.1:9999/v1", "apiKey": "{env:OPENAI_API_KEY}"}
    assert provider["models"]["gpt-test"] == {
        "name": "gpt-test",
        "tool_call": True,
        "limit": {"context": 200000, "output": 10},
        "temperature": True,  # it takes one: opencode sends it only then
    }
    assert config["agent"] == {"build": {"temperature": 0.4}}
    assert config["permission"] == {"*": "allow"} and "sk-secret" not in str(command)
    assert command.env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"
    assert command.keys == {"OPENAI_API_KEY": "OPENAI_API_KEY"} and command.warnings == []


@pytest.mark.parametrize(
    ("provider", "base_url", "key"),
    [
        ("anthropic", "http://anthropic.internal:8080/v1", "{env:ANTHROPIC_API_KEY}"),
        ("litellm", "http://litellm.internal:4000/v1", "{env:LITELLM_PROXY_API_KEY}"),
        ("ollama", "http://ollama.internal:11434/v1", "none"),
    ],
)
def test_opencode_providers(provider: str, base_url: str, key: str) -> None:
    """Each provider becomes an opencode provider at the worker's endpoint (its API's /v1)."""
    config = json.loads(command_for("opencode", provider=provider, model="m").env["OPENCODE_CONFIG_CONTENT"])
    assert config["provider"]["gastown"]["options"] == {"baseURL": base_url, "apiKey": key}


def test_opencode_without_a_provider_uses_its_own() -> None:
    """Without a provider, the model goes to opencode as written (its own `provider/model`)."""
    plain = command_for("opencode", model="anthropic/claude-x", maxTokens=10)
    assert plain.argv == ["opencode", "run", "--model", "anthropic/claude-x", PROMPT]
    assert plain.warnings == ["agentConfig.maxTokens is not supported by opencode and was not applied"]


def test_custom_gets_every_setting_in_its_environment() -> None:
    """A custom agent runs its own argv and receives every agentConfig field as GT_* variables."""
    command = command_for(
        "custom", command=["./agent", "--fast"], provider="openai", model="m", maxTokens=5, temperature=0.5
    )
    assert command.argv == ["./agent", "--fast"]
    assert command.env == {
        "GT_PROVIDER": "openai",
        "GT_MODEL": "m",
        "GT_MAX_TOKENS": "5",
        "GT_TEMPERATURE": "0.5",
    }
    assert command.warnings == []


def test_prompt_carries_bead_and_task_verbatim() -> None:
    """The prompt names the bead and carries the task text exactly as written."""
    polecat_spec = spec("claude-code").model_copy(update={"task_description": PROMPT})
    prompt = prompt_for("nux", "athena", "polecat/nux", polecat_spec)
    assert "Bead: gt-1" in prompt
    assert PROMPT in prompt
    assert "polecat/nux" in prompt


def test_prompt_carries_the_beads_own_text() -> None:
    """With the bead read from the BeadStore, the prompt carries its id, title, description and criteria."""
    bead = Bead(
        id="gt-1", title="Fix the pump", description="It leaks $(oil).", acceptance_criteria="Dry floor."
    )
    prompt = prompt_for("nux", "athena", "polecat/nux", spec("claude-code"), bead)
    assert "Bead gt-1: Fix the pump" in prompt
    assert "Description:\nIt leaks $(oil)." in prompt
    assert "Acceptance criteria:\nDry floor." in prompt


def test_a_later_attempt_continues_the_agents_conversation() -> None:
    """claude-code names its session on the first attempt and resumes it once saved; opencode continues
    the worktree's last session; aider restores its chat history. A first attempt continues nothing."""
    first, later = Session("3f2c", resume=False), Session("3f2c", resume=True, saved=True)
    claude = agent_command(spec("claude-code"), PROMPT, {}, AGENT_DIR, first).argv
    assert claude[claude.index("--session-id") + 1] == "3f2c" and "--resume" not in claude
    claude = agent_command(spec("claude-code"), PROMPT, {}, AGENT_DIR, later).argv
    assert claude[claude.index("--resume") + 1] == "3f2c" and "--session-id" not in claude
    assert "--continue" in agent_command(spec("opencode"), PROMPT, {}, AGENT_DIR, later).argv
    assert "--continue" not in agent_command(spec("opencode"), PROMPT, {}, AGENT_DIR, first).argv
    assert "--restore-chat-history" in agent_command(spec("aider"), PROMPT, {}, AGENT_DIR, later).argv
    assert "--restore-chat-history" not in agent_command(spec("aider"), PROMPT, {}, AGENT_DIR, first).argv
    assert agent_command(spec("claude-code"), PROMPT, {}, AGENT_DIR, later).argv[-1] == PROMPT
    assert "continue from where it stopped" in prompt_for(
        "nux", "r", "b", spec("custom", command=["x"]), resumed=True
    )
