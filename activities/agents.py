"""The command line of each agent, and what each agentConfig field becomes.

Pure functions: no I/O, so the mapping is unit-tested line by line. The
flags are the ones each tool documents (`claude --help`, `opencode run
--help`, `aider --help`); a setting a tool cannot take is returned as a
warning that the workflow puts in the polecat's status message.
"""

from __future__ import annotations

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


def opencode(config: AgentConfig, prompt: str) -> AgentCommand:
    argv = ["opencode", "run"]
    if config.model:
        model = f"{config.provider}/{config.model}" if config.provider else config.model
        argv += ["--model", model]
    env = {"OPENCODE_PERMISSION": '{"*":"allow"}'}
    warnings = _unsupported("opencode", config, "maxTokens", "temperature")
    return AgentCommand([*argv, prompt], env, warnings)


def aider(config: AgentConfig, prompt: str) -> AgentCommand:
    argv = ["aider", "--yes-always", "--no-check-update", "--no-analytics"]
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


BUILDERS = {"claude-code": claude_code, "opencode": opencode, "aider": aider, "custom": custom}


def agent_command(spec: PolecatSpec, prompt: str) -> AgentCommand:
    """The argv, extra environment and warnings for the polecat's agent."""
    return BUILDERS[spec.agent](spec.agent_config or AgentConfig(), prompt)


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
