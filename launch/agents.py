"""The command line of each agent, and what each agentConfig field becomes.

Pure functions: no I/O, so the mapping is unit-tested line by line. The
flags are the ones each tool documents (`claude --help`, `opencode run
--help`, `aider --help`); a setting a tool cannot take is returned as a
warning that the workflow puts in the polecat's status message.

Where a provider is, and its key, are never in the spec. Endpoints come from
the worker's environment in each provider's standard variables (`PROVIDERS`)
and are handed to the agent in the form it understands; a key is only ever
named (`AgentCommand.keys`): the launcher copies it from the worker's
environment (local mode) or from the polecat's apiKeySecretRef (a pod).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from contracts.beads import Bead
from crds.polecat import AgentConfig, PolecatSpec


@dataclass
class AgentCommand:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # The agent's key variable -> the worker's variable (or the apiKeySecretRef) its value comes from.
    keys: dict[str, str] = field(default_factory=dict)
    # Files the agent's argv names, by name in the agent directory: written before it starts.
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProviderVariables:
    """A model provider as the worker's environment names it: base URL variables (the first set
    wins), the URL used when none is set, and the variable holding its key."""

    url_variables: tuple[str, ...]
    default_url: str
    key_variable: str | None


PROVIDERS = {
    "anthropic": ProviderVariables(("ANTHROPIC_BASE_URL",), "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "openai": ProviderVariables(
        ("OPENAI_BASE_URL", "OPENAI_API_BASE"), "https://api.openai.com/v1", "OPENAI_API_KEY"
    ),
    # LiteLLM's own names for its proxy, as the litellm SDK (and so aider) reads them.
    "litellm": ProviderVariables(
        ("LITELLM_PROXY_API_BASE",), "http://127.0.0.1:4000", "LITELLM_PROXY_API_KEY"
    ),
    "ollama": ProviderVariables(("OLLAMA_HOST",), "http://127.0.0.1:11434", None),
}


def endpoint(provider: str, environ: Mapping[str, str]) -> str | None:
    """The provider's base URL as the worker's environment sets it (None if unset), with a scheme
    (OLLAMA_HOST is often `host:port`) and without a trailing slash."""
    url = next((environ[name] for name in PROVIDERS[provider].url_variables if environ.get(name)), None)
    if url is None:
        return None
    return (url if "://" in url else f"http://{url}").rstrip("/")


def _without_v1(url: str) -> str:
    return url.removesuffix("/v1")


def _with_v1(url: str) -> str:
    return f"{_without_v1(url)}/v1"


def _unsupported(agent: str, config: AgentConfig, *names: str) -> list[str]:
    wire = config.to_wire()
    return [
        f"agentConfig.{name} is not supported by {agent} and was not applied"
        for name in names
        if name in wire
    ]


def _unknown_provider(agent: str, provider: str, why: str) -> list[str]:
    return [f"agentConfig.provider {provider} is not supported by {agent} ({why}) and was not applied"]


# Claude Code run unattended: no update check, no telemetry or error reports, nothing but the model's API.
CLAUDE_QUIET = {
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


def claude_code(
    config: AgentConfig, prompt: str, environ: Mapping[str, str], session: Session | None = None
) -> AgentCommand:
    """`claude --print`. It speaks the Anthropic API only: to Anthropic, or to a LiteLLM proxy's
    Anthropic endpoint (a bearer token, as LiteLLM documents for Claude Code). Its conversation has
    the polecat's session id: a later attempt resumes it, once claude has saved it."""
    argv = ["claude", "--print", "--dangerously-skip-permissions"]
    if session is not None:
        argv += ["--resume" if session.saved else "--session-id", session.id]
    env = {"IS_SANDBOX": "1", **CLAUDE_QUIET}  # as root, claude refuses the flag above without IS_SANDBOX
    keys: dict[str, str] = {}
    warnings = _unsupported("claude-code", config, "temperature")
    provider = config.provider or "anthropic"
    if provider == "anthropic":
        url = endpoint("anthropic", environ)
        keys["ANTHROPIC_API_KEY"] = "ANTHROPIC_API_KEY"
    elif provider == "litellm":
        url = endpoint("litellm", environ) or PROVIDERS["litellm"].default_url
        keys["ANTHROPIC_AUTH_TOKEN"] = "LITELLM_PROXY_API_KEY"
    else:
        url = None
        warnings += _unknown_provider("claude-code", provider, "it speaks the Anthropic API only")
    if url:
        env["ANTHROPIC_BASE_URL"] = _without_v1(url)  # claude adds /v1/messages itself
    if config.model:
        argv += ["--model", config.model]
    if config.max_tokens:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(config.max_tokens)
    return AgentCommand([*argv, prompt], env, keys, {}, warnings)


# opencode reaches every provider as a provider of its config, through the AI SDK package bundled in it.
OPENCODE_PACKAGES = {
    "anthropic": "@ai-sdk/anthropic",
    "openai": "@ai-sdk/openai-compatible",
    "litellm": "@ai-sdk/openai-compatible",
    "ollama": "@ai-sdk/openai-compatible",
}
# opencode run unattended: every tool allowed, and nothing fetched: no model list from models.dev,
# no update, no language server download. (Its own plugin install is kept offline by the npmrc
# that agents/install writes beside it.)
OPENCODE_QUIET = {
    "OPENCODE_PERMISSION": '{"*":"allow"}',
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
}


def opencode(
    config: AgentConfig, prompt: str, environ: Mapping[str, str], session: Session | None = None
) -> AgentCommand:
    """`opencode run`, its provider declared in OPENCODE_CONFIG_CONTENT with the key as `{env:...}`.
    A later attempt continues the worktree's last session (`--continue`)."""
    argv = ["opencode", "run", *(["--continue"] if session and session.resume else [])]
    settings: dict[str, object] = {"permission": {"*": "allow"}, "autoupdate": False, "share": "disabled"}
    keys: dict[str, str] = {}
    warnings: list[str] = []
    if config.provider and config.model:
        provider = PROVIDERS[config.provider]
        url = endpoint(config.provider, environ) or provider.default_url
        model: dict[str, object] = {"name": config.model, "tool_call": True}
        if config.max_tokens:  # opencode's limit needs a context size too: a generous one
            model["limit"] = {"context": 200_000, "output": config.max_tokens}
        if config.temperature is not None:  # opencode sends one only to a model declared to take it
            model["temperature"] = True
        settings["provider"] = {
            "gastown": {
                "npm": OPENCODE_PACKAGES[config.provider],
                "name": f"{config.provider} (gastown)",
                "options": {
                    "baseURL": _with_v1(url),
                    "apiKey": f"{{env:{provider.key_variable}}}" if provider.key_variable else "none",
                },
                "models": {config.model: model},
            }
        }
        if provider.key_variable:
            keys[provider.key_variable] = provider.key_variable
        argv += ["--model", f"gastown/{config.model}"]
    else:
        if config.model:
            argv += ["--model", config.model]
        warnings += _unsupported("opencode", config, "maxTokens")
    if config.temperature is not None:  # `opencode run` works as its `build` agent
        settings["agent"] = {"build": {"temperature": config.temperature}}
    env = {**OPENCODE_QUIET, "OPENCODE_CONFIG_CONTENT": json.dumps(settings)}
    return AgentCommand([*argv, prompt], env, keys, {}, warnings)


# aider names models the LiteLLM way, `<prefix><model>`, and LiteLLM reads these base URL variables.
AIDER_MODELS = {
    "anthropic": ("anthropic/", "ANTHROPIC_BASE_URL"),
    "openai": ("openai/", "OPENAI_API_BASE"),
    "litellm": ("litellm_proxy/", "LITELLM_PROXY_API_BASE"),
    "ollama": ("ollama_chat/", "OLLAMA_API_BASE"),
}
AIDER_SETTINGS = "aider.model.settings.yml"


def aider(
    config: AgentConfig,
    prompt: str,
    environ: Mapping[str, str],
    agent_dir: str,
    session: Session | None = None,
) -> AgentCommand:
    """`aider --message`. maxTokens and temperature become the model's `extra_params` in a model
    settings file (aider has no flag for them). A later attempt restores the chat history aider
    keeps in the worktree (`--restore-chat-history`)."""
    # Unattended: no prompts, no update check or analytics, no release notes, and no edit to the
    # project's .gitignore (aider would commit one).
    argv = [
        "aider",
        "--yes-always",
        "--no-check-update",
        "--no-analytics",
        "--no-show-release-notes",
        "--no-gitignore",
        *(["--restore-chat-history"] if session and session.resume else []),
    ]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # LiteLLM's bundled model list, not GitHub's
    keys: dict[str, str] = {}
    files: dict[str, str] = {}
    model = config.model
    if config.provider:
        prefix, url_variable = AIDER_MODELS[config.provider]
        model = f"{prefix}{config.model}" if config.model else None
        url = endpoint(config.provider, environ)
        if url:
            env[url_variable] = url
        key_variable = PROVIDERS[config.provider].key_variable
        if key_variable:
            keys[key_variable] = key_variable
    warnings = []
    if model:
        argv += ["--model", model]
        extra = {"max_tokens": config.max_tokens, "temperature": config.temperature}
        extra_params = {name: value for name, value in extra.items() if value is not None}
        if extra_params:  # JSON is YAML: the file aider reads
            files[AIDER_SETTINGS] = json.dumps([{"name": model, "extra_params": extra_params}])
            argv += ["--model-settings-file", str(PurePosixPath(agent_dir) / AIDER_SETTINGS)]
    else:
        warnings = _unsupported("aider", config, "maxTokens", "temperature")
    return AgentCommand([*argv, "--message", prompt], env, keys, files, warnings)


def custom(config: AgentConfig) -> AgentCommand:
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
    key_variable = PROVIDERS[config.provider].key_variable if config.provider else None
    keys = {key_variable: key_variable} if key_variable else {}
    return AgentCommand(list(config.command or []), env, keys)


@dataclass(frozen=True)
class Session:
    """The agent's conversation across attempts: its id (claude-code's), whether this attempt
    continues an earlier one, and whether the CLI has saved it (claude-code resumes only a saved one)."""

    id: str
    resume: bool = False
    saved: bool = False


def agent_command(
    spec: PolecatSpec, prompt: str, environ: Mapping[str, str], agent_dir: str, session: Session | None = None
) -> AgentCommand:
    """The argv, extra environment, key references, files and warnings for the polecat's agent.

    `environ`: the worker's environment, where providers' endpoints are named (never read for keys).
    `agent_dir`: the directory the launcher writes `files` to, private to this polecat.
    `session`: the conversation a later attempt continues, where the CLI can.
    """
    config = spec.agent_config or AgentConfig()
    if spec.agent == "claude-code":
        return claude_code(config, prompt, environ, session)
    if spec.agent == "opencode":
        return opencode(config, prompt, environ, session)
    if spec.agent == "aider":
        return aider(config, prompt, environ, agent_dir, session)
    return custom(config)


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


def prompt_for(
    polecat_name: str,
    rig: str,
    branch: str,
    spec: PolecatSpec,
    bead: Bead | None = None,
    resumed: bool = False,
    follow_up: str | None = None,
) -> str:
    """The task as the agent reads it. User text is data here, never code.

    `resumed`: a later run, continuing stopped work; `follow_up`: people's follow-up (a nudge) for
    this run, the work so far kept."""
    lines = [f"You are polecat {polecat_name}, working on rig {rig}."]
    if follow_up is not None:
        lines += [
            "",
            "A person following your work sends you a follow-up. Your work so far is in this",
            "worktree (and its commits on the branch); do what the follow-up asks:",
            "",
            follow_up,
            "",
            "The task you were given, for reference:",
        ]
    elif resumed:
        lines += [
            "Your earlier run on this task was stopped before it finished. Its work is in this",
            "worktree (and its commits on the branch): continue from where it stopped.",
        ]
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
