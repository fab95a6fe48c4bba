"""Polecat: one autonomous coding agent working one bead or task."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from crds.common import (
    ApiModel,
    BranchName,
    Condition,
    DnsName,
    FieldError,
    KindInfo,
    LimitedText,
    Resource,
    Timestamp,
)
from crds.usage import Budget, Usage

BeadID = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
DesiredState = Literal["Idle", "Working", "Terminated"]
PolecatPhase = Literal["Pending", "Idle", "Working", "Succeeded", "Failed", "Terminated"]
ExecutionMode = Literal["local", "kubernetes"]
AgentName = Literal["claude-code", "opencode", "aider", "custom"]
# The agents a polecat knows by name. Their exit status does not prove work (aider exits 0 when it
# gave up on the model): such a polecat succeeds only with a commit on its branch.
NAMED_AGENTS: tuple[AgentName, ...] = ("claude-code", "opencode", "aider")
Provider = Literal["anthropic", "litellm", "openai", "ollama"]

# The spec's diagram, plus Pending (before the first reconcile) and two edges
# the diagram leaves out but a user needs: terminating a Working or Succeeded
# polecat (its line to Terminated runs through Failed's column in the drawing;
# we do not pretend the agent failed); and Idle -> Failed, when the work cannot
# start (its bead is closed, its worktree cannot be made). Documented in
# README "Polecat phases". A Witness's restart adds one more: Failed -> Working,
# a new attempt of the same polecat (its count in status.restarts); and a long
# rate limit another: Working -> Pending, the agent stopped until the reset
# (then Pending -> Working, resumed; its count in status.resumes); and a
# follow-up (a nudge) to a Succeeded polecat: Succeeded -> Working, its agent's
# session resumed with the message (status.conversation).
TRANSITIONS: dict[str, frozenset[str]] = {
    "Pending": frozenset({"Idle", "Working", "Failed", "Terminated"}),
    "Idle": frozenset({"Working", "Failed", "Terminated"}),
    "Working": frozenset({"Pending", "Succeeded", "Failed", "Terminated"}),
    "Succeeded": frozenset({"Working", "Failed", "Terminated"}),
    "Failed": frozenset({"Working", "Terminated"}),
    "Terminated": frozenset(),
}


# A polecat still at its work (a rig's polecatCount, a convoy's in progress), and one done with it.
LIVE_PHASES = ("Pending", "Idle", "Working")
FINAL_PHASES = ("Succeeded", "Failed", "Terminated")

# A Witness restarts a polecat at most this often; then it leaves it Failed and says so.
MAX_RESTARTS = 3
# Failures a restart cannot mend: the work is gone or done.
NOT_RESTARTABLE = ("BeadClosed", "BeadNotFound", "BudgetExceeded", "ConvoyBudgetExceeded")


class AgentConfig(ApiModel):
    provider: Provider | None = Field(None, description="Model provider.")
    model: str | None = Field(None, max_length=256, description="Full model id.")
    max_tokens: int | None = Field(None, gt=0, description="Max output tokens.")
    temperature: float | None = Field(None, ge=0.0, le=1.0, description="0.0-1.0.")
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description=(
            "Extension: the argv of a `custom` agent, run without a shell in the polecat's worktree."
        ),
    )

    @model_validator(mode="after")
    def _command_is_argv(self) -> AgentConfig:
        if self.command is not None:
            if not self.command[0]:
                raise FieldError("command[0]", "must name a program")
            if "=" in self.command[0]:
                raise FieldError("command[0]", "must name a program, not an assignment")
        return self


class SecretRef(ApiModel):
    name: DnsName


class SecretKeyRef(ApiModel):
    name: DnsName
    key: str = Field("api-key", min_length=1, max_length=253, description="Key within the secret.")


class ResourceList(ApiModel):
    cpu: str | None = Field(None, max_length=64)
    memory: str | None = Field(None, max_length=64)


class ResourceRequirements(ApiModel):
    requests: ResourceList | None = None
    limits: ResourceList | None = None


class KubernetesSpec(ApiModel):
    git_repository: str | None = Field(None, max_length=2048, description="SSH URL of the repository.")
    git_branch: BranchName = Field("main", description="Base branch.")
    work_branch: BranchName | None = Field(None, description="Branch for changes (default polecat/<name>).")
    git_secret_ref: SecretRef | None = None
    claude_creds_secret_ref: SecretRef | None = None
    api_key_secret_ref: SecretKeyRef | None = None
    active_deadline_seconds: int | None = Field(
        None, gt=0, description="Timeout; required in kubernetes mode."
    )
    resources: ResourceRequirements | None = None
    image: str | None = Field(
        None,
        max_length=512,
        description="Extension: the polecat image (default: the worker's GASTOWN_POLECAT_IMAGE).",
    )


class PolecatTemplate(ApiModel):
    """How a polecat runs: every Polecat spec field but rig, beadID and desiredState.

    A Convoy's `spec.polecatTemplate` (our extension) is one of these, applied
    to each polecat it spawns.
    """

    task_description: LimitedText | None = Field(
        None, description="Natural language instructions (if no beadID)."
    )
    execution_mode: ExecutionMode = "local"
    agent: AgentName = "claude-code"
    agent_config: AgentConfig | None = None
    kubernetes: KubernetesSpec | None = None
    budget: Budget | None = Field(
        None,
        description=(
            "Extension: what the agent may spend; once spent it is stopped and the polecat Failed "
            "(BudgetExceeded), its work kept. Local agents only."
        ),
    )

    @model_validator(mode="after")
    def _how_it_runs(self) -> PolecatTemplate:
        if self.agent == "custom" and not (self.agent_config and self.agent_config.command):
            raise FieldError("agentConfig.command", "required when agent is custom")
        if self.execution_mode == "kubernetes":
            if self.kubernetes is None:
                raise FieldError("kubernetes", "required when executionMode is kubernetes")
            if self.kubernetes.active_deadline_seconds is None:
                raise FieldError(
                    "kubernetes.activeDeadlineSeconds",
                    "required when executionMode is kubernetes",
                )
            if not self.kubernetes.git_repository:
                raise FieldError("kubernetes.gitRepository", "required when executionMode is kubernetes")
        return self


class PolecatSpec(PolecatTemplate):
    rig: DnsName = Field(description="Parent rig name (must exist).")
    desired_state: DesiredState = Field(description="Idle | Working | Terminated.")
    bead_id: BeadID | None = Field(None, description="Bead issue to work on (e.g. at-1234).")

    @model_validator(mode="after")
    def _what_it_works_on(self) -> PolecatSpec:
        if self.desired_state == "Working" and not (self.bead_id or self.task_description):
            raise FieldError("beadID", "beadID or taskDescription is required when desiredState is Working")
        return self


# A follow-up for a polecat's agent: its text is data (a prompt), never shell, as taskDescription.
FOLLOW_UP_CHARS = 4000
FollowUpText = Annotated[
    str, StringConstraints(min_length=1, max_length=FOLLOW_UP_CHARS, strip_whitespace=True)
]
# The annotation a person sets (kubectl annotate) to nudge a polecat on a cluster: each new value once.
NUDGE_ANNOTATION = "polecat.gastown.gastown.io/nudge"
FollowUpOutcome = Literal["Queued", "Delivered", "Succeeded", "Failed", "Terminated", "Refused"]
FollowUpSource = Literal["cli", "board", "signal", "annotation"]


class FollowUp(ApiModel):
    """A follow-up sent to the polecat's agent (a nudge), and what came of it."""

    time: Timestamp
    message: str = Field(description="Its text (the status keeps the first 200 characters).")
    outcome: FollowUpOutcome = Field(
        description="Queued, Delivered (its run is under way), then how that run ended; or Refused."
    )
    detail: str = Field("", description="Why it was refused, or how its run ended.")
    source: FollowUpSource = "cli"


class PolecatStatus(ApiModel):
    phase: PolecatPhase = "Pending"
    current_state: DesiredState | None = None
    bead_id: str | None = None
    message: str = ""
    pod_name: str | None = None
    tmux_session: str | None = None
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    conditions: list[Condition] = Field(default_factory=list)
    # Extensions: what the polecat produced, for the refinery and for people.
    branch: str | None = Field(None, description="Extension: the polecat's work branch.")
    commit: str | None = Field(None, description="Extension: head commit of the branch.")
    exit_code: int | None = Field(None, description="Extension: the agent's exit status.")
    log_file: str | None = Field(None, description="Extension: the agent's output (local mode).")
    host: str | None = Field(
        None, description="Extension: the host its worktree and session are on (local mode)."
    )
    restarts: int = Field(
        0, description="Extension: attempts after the first (a Witness's restart, or a raised budget)."
    )
    usage: Usage | None = Field(
        None, description="Extension: what the agent spent (tokens, requests, cost), over all its attempts."
    )
    resumes: int = Field(0, description="Extension: how often the agent was resumed after a rate limit.")
    bead_title: str | None = Field(None, description="Extension: the bead's title, from the rig's BeadStore.")
    follow_ups: int = Field(
        0, description="Extension: runs the agent was resumed for with a follow-up (nudge)."
    )
    conversation: list[FollowUp] = Field(
        default_factory=list, description="Extension: the follow-ups sent to the agent, the latest 20."
    )
    earlier_follow_ups: int = Field(0, description="Extension: follow-ups older than those in conversation.")
    last_restart_time: Timestamp | None = Field(None, description="Extension: when the latest attempt began.")
    observed_generation: int | None = Field(None, description="The spec generation this status is of.")


class Polecat(Resource):
    INFO = KindInfo(
        kind="Polecat",
        plural="polecats",
        short_names=["pc"],
        namespaced=True,
        initial_phase=PolecatStatus.model_fields["phase"].default,
        printer_columns=[
            ("Rig", ".spec.rig", "string", 0),
            ("Desired", ".spec.desiredState", "string", 0),
            ("Phase", ".status.phase", "string", 0),
            ("Bead", ".spec.beadID", "string", 0),
            ("Agent", ".spec.agent", "string", 0),
            ("Mode", ".spec.executionMode", "string", 0),
            ("Host", ".status.host", "string", 1),
            ("Restarts", ".status.restarts", "integer", 1),
            ("Cost", ".status.usage.cost", "string", 1),
            ("Session", ".status.tmuxSession", "string", 1),
            ("Pod", ".status.podName", "string", 1),
            ("Message", ".status.message", "string", 1),
        ],
    )

    kind: Literal["Polecat"] = "Polecat"
    spec: PolecatSpec
    status: PolecatStatus | None = None

    @property
    def work_branch(self) -> str:
        """The branch this polecat commits to (spec default `polecat/<name>`)."""
        if self.spec.kubernetes and self.spec.kubernetes.work_branch:
            return self.spec.kubernetes.work_branch
        return f"polecat/{self.name}"


def change_problems(current: Polecat, new: Polecat) -> list[str]:
    """Why `new` may not replace `current` (empty if it may).

    Checked by the CLI before it applies anything and by the workflow's update
    validator, so a refused change is refused the same way everywhere.
    """
    problems = []
    if new.spec.rig != current.spec.rig:
        problems.append(f"spec.rig: immutable (is {current.spec.rig!r})")
    phase = current.status.phase if current.status else "Pending"
    # The same spec again (a bridge resyncing the CR, the same file applied twice) changes nothing.
    if phase == "Terminated" and new.spec.desired_state != "Terminated" and new.spec != current.spec:
        problems.append("spec.desiredState: the polecat is Terminated; delete it to start again")
    return problems
