"""The command line of each agent, and what each agentConfig field becomes.

Pure functions: no I/O, so the mapping is unit-tested line by line. The
flags are the ones each tool documents (`claude --help`, `opencode run
--help`, `aider --help`); a setting a tool cannot take is returned as a
warning that the workflow puts in the polecat's status message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from activities.beads import Bead
from crds.polecat import AgentConfig, PolecatSpec


@dataclass
class AgentCommand:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _unsupported(agent: str, config: AgentConfig, *names: str) -> list[str]:
    wire = config.to_wire()
    return [
        f"agentConfig.{name} is not supported by {agent} and was not applied"
        for name in names
        if name in wire
    ]


# Claude Code run unattended: no update check, no telemetry or error reports, nothing but the model's API.
CLAUDE_QUIET = {
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


def claude_code(config: AgentConfig, prompt: str) -> AgentCommand:
    argv = ["claude", "--print", "--dangerously-skip-permissions"]
    env = {"IS_SANDBOX": "1", **CLAUDE_QUIET}  # as root, claude refuses the flag above without IS_SANDBOX
    if config.model:
        argv += ["--model", config.model]
    if config.max_tokens:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(config.max_tokens)
    warnings = _unsupported("claude-code", config, "temperature")
    if config.provider not in (None, "anthropic", "litellm"):
        warnings.append(
            f"agentConfig.provider {config.provider} is not supported by claude-code "
            "(it speaks the Anthropic API only) and was not applied"
        )
    return AgentCommand([*argv, prompt], env, warnings)


# opencode reaches a provider as a provider of its config: (AI SDK package, base URL variables of the
# worker's environment, their default, the key's variable). The key stays a reference (`{env:...}`).
OPENCODE_PROVIDERS: dict[str, tuple[str, tuple[str, ...], str, str | None]] = {
    "anthropic": (
        "@ai-sdk/anthropic",
        ("ANTHROPIC_BASE_URL",),
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
    ),
    "openai": (
        "@ai-sdk/openai-compatible",
        ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
    ),
    "litellm": (
        "@ai-sdk/openai-compatible",
        ("LITELLM_BASE_URL",),
        "http://127.0.0.1:4000",
        "LITELLM_API_KEY",
    ),
    "ollama": ("@ai-sdk/openai-compatible", ("OLLAMA_HOST",), "http://127.0.0.1:11434", None),
}


def _v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def opencode(config: AgentConfig, prompt: str, environ: Mapping[str, str]) -> AgentCommand:
    """`opencode run`, its provider declared in OPENCODE_CONFIG_CONTENT (permissions: all allowed)."""
    argv = ["opencode", "run"]
    settings: dict[str, object] = {"permission": {"*": "allow"}, "autoupdate": False, "share": "disabled"}
    warnings = _unsupported("opencode", config, "temperature")
    if config.provider and config.model:
        package, url_variables, default_url, key_variable = OPENCODE_PROVIDERS[config.provider]
        url = next((environ[name] for name in url_variables if environ.get(name)), default_url)
        model: dict[str, object] = {"name": config.model, "tool_call": True}
        if config.max_tokens:  # opencode's limit needs a context size too: a generous one
            model["limit"] = {"context": 200_000, "output": config.max_tokens}
        settings["provider"] = {
            "gastown": {
                "npm": package,
                "name": f"{config.provider} (gastown)",
                "options": {
                    "baseURL": _v1(url),
                    "apiKey": f"{{env:{key_variable}}}" if key_variable else "none",
                },
                "models": {config.model: model},
            }
        }
        argv += ["--model", f"gastown/{config.model}"]
    else:
        if config.model:
            argv += ["--model", config.model]
        warnings += _unsupported("opencode", config, "maxTokens")
    env = {"OPENCODE_PERMISSION": '{"*":"allow"}', "OPENCODE_CONFIG_CONTENT": json.dumps(settings)}
    return AgentCommand([*argv, prompt], env, warnings)


def aider(config: AgentConfig, prompt: str) -> AgentCommand:
    # Unattended: no prompts, no update check or analytics, no release notes, and no edit to the
    # project's .gitignore (aider would commit one).
    argv = [
        "aider",
        "--yes-always",
        "--no-check-update",
        "--no-analytics",
        "--no-show-release-notes",
        "--no-gitignore",
    ]
    if config.model:
        # aider names models the LiteLLM way: provider/model.
        model = f"{config.provider}/{config.model}" if config.provider else config.model
        argv += ["--model", model]
    warnings = _unsupported("aider", config, "maxTokens", "temperature")
    return AgentCommand([*argv, "--message", prompt], {}, warnings)


def custom(config: AgentConfig, prompt: str) -> AgentCommand:
    # A custom agent reads the task from $GT_PROMPT_FILE; every setting
    # reaches it as an environment variable, so none is dropped.
    env = {}
    for name, value in (
        ("GT_PROVIDER", config.provider),
        ("GT_MODEL", config.model),
        ("GT_MAX_TOKENS", config.max_tokens),
        ("GT_TEMPERATURE", config.temperature),
    ):
        if value is not None:
            env[name] = str(value)
    return AgentCommand(list(config.command or []), env, [])


def agent_command(spec: PolecatSpec, prompt: str, environ: Mapping[str, str] | None = None) -> AgentCommand:
    """The argv, extra environment and warnings for the polecat's agent.

    `environ`: the worker's environment, where providers' endpoints are named (never read for keys,
    which the agent finds in its own environment).
    """
    config = spec.agent_config or AgentConfig()
    if spec.agent == "opencode":
        return opencode(config, prompt, environ or {})
    builders = {"claude-code": claude_code, "aider": aider, "custom": custom}
    return builders[spec.agent](config, prompt)


def agent_environment(polecat_name: str, branch: str, spec: PolecatSpec) -> dict[str, str]:
    """What every agent finds in its environment, in a tmux session or a pod (Gas Town's names)."""
    return {
        "GT_RIG": spec.rig,
        "GT_POLECAT": polecat_name,
        "GT_BRANCH": branch,
        "GT_ISSUE": spec.bead_id or "",
        "GIT_AUTHOR_NAME": polecat_name,
        "GIT_COMMITTER_NAME": polecat_name,
        "GIT_AUTHOR_EMAIL": f"{polecat_name}@gastown.local",
        "GIT_COMMITTER_EMAIL": f"{polecat_name}@gastown.local",
    }


def prompt_for(polecat_name: str, rig: str, branch: str, spec: PolecatSpec, bead: Bead | None = None) -> str:
    """The task as the agent reads it. User text is data here, never code."""
    lines = [f"You are polecat {polecat_name}, working on rig {rig}."]
    if bead is not None:
        lines += ["", f"Bead {bead.id}: {bead.title}"]
        if bead.description:
            lines += ["", "Description:", bead.description]
        if bead.acceptance_criteria:
            lines += ["", "Acceptance criteria:", bead.acceptance_criteria]
    elif spec.bead_id:
        lines.append(f"Bead: {spec.bead_id}")
    if spec.task_description:
        lines += ["", "Task:", spec.task_description]
    lines += [
        "",
        f"You are in a git worktree on branch {branch}. Commit your work to it with git;",
        "exit when the task is done.",
    ]
    return "\n".join(lines) + "\n"
