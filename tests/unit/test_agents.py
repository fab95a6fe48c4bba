"""What each agent's command line is, and what each agentConfig field becomes."""

from __future__ import annotations

import json
from typing import Any

from activities.agents import agent_command, prompt_for
from activities.beads import Bead
from crds.polecat import PolecatSpec

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


def test_claude_code_one_shot() -> None:
    """claude-code runs in --print mode with permissions skipped; model and maxTokens map; temperature cannot."""
    command = agent_command(
        spec("claude-code", model="claude-sonnet-4-20250514", maxTokens=4096, temperature=0.2), PROMPT
    )
    assert command.argv == [
        "claude", "--print", "--dangerously-skip-permissions", "--model", "claude-sonnet-4-20250514", PROMPT,
    ]  # fmt: skip
    assert command.env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "4096"
    assert command.env["IS_SANDBOX"] == "1"
    assert command.warnings == ["agentConfig.temperature is not supported by claude-code and was not applied"]


def test_claude_code_other_providers_are_reported() -> None:
    """claude-code speaks only the Anthropic API: provider openai is reported, not silently dropped."""
    command = agent_command(spec("claude-code", provider="openai"), PROMPT)
    assert any("provider openai is not supported by claude-code" in warning for warning in command.warnings)


def test_opencode_run() -> None:
    """opencode uses `run` (a bare positional prompt exits at once); the provider is declared in its
    config, its endpoint from the worker's environment, its key by reference only."""
    environ = {"OPENAI_API_BASE": "http://127.0.0.1:9999/v1", "OPENAI_API_KEY": "sk-secret"}
    command = agent_command(
        spec("opencode", provider="openai", model="gpt-test", maxTokens=10), PROMPT, environ
    )
    assert command.argv == ["opencode", "run", "--model", "gastown/gpt-test", PROMPT]
    config = json.loads(command.env["OPENCODE_CONFIG_CONTENT"])
    provider = config["provider"]["gastown"]
    assert provider["options"] == {"baseURL": "http://127.0.0.1:9999/v1", "apiKey": "{env:OPENAI_API_KEY}"}
    assert provider["models"]["gpt-test"] == {
        "name": "gpt-test",
        "tool_call": True,
        "limit": {"context": 200000, "output": 10},
    }
    assert config["permission"] == {"*": "allow"} and "sk-secret" not in str(command.env)
    assert command.warnings == []
    anthropic = agent_command(spec("opencode", provider="anthropic", model="claude-x"), PROMPT, {})
    options = json.loads(anthropic.env["OPENCODE_CONFIG_CONTENT"])["provider"]["gastown"]["options"]
    assert options["baseURL"] == "https://api.anthropic.com/v1"
    plain = agent_command(spec("opencode", model="anthropic/claude-x", maxTokens=10), PROMPT)
    assert plain.argv == ["opencode", "run", "--model", "anthropic/claude-x", PROMPT]
    assert plain.warnings == ["agentConfig.maxTokens is not supported by opencode and was not applied"]


def test_aider_message() -> None:
    """aider runs non-interactively with --message and LiteLLM-style model names."""
    command = agent_command(spec("aider", provider="ollama", model="llama3"), PROMPT)
    assert command.argv == [
        "aider", "--yes-always", "--no-check-update", "--no-analytics", "--no-show-release-notes", "--no-gitignore",
        "--model", "ollama/llama3", "--message", PROMPT,
    ]  # fmt: skip
    assert command.warnings == []


def test_custom_gets_every_setting_in_its_environment() -> None:
    """A custom agent runs its own argv and receives every agentConfig field as GT_* variables."""
    command = agent_command(
        spec(
            "custom",
            command=["./agent", "--fast"],
            provider="openai",
            model="m",
            maxTokens=5,
            temperature=0.5,
        ),
        PROMPT,
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
