"""Worker and CLI settings, from the environment (or a `.env`-free default)."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Annotated, NamedTuple, Self
from urllib.parse import quote

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.names import host_queue
from crds.common import HostName

# The agent CLIs `make` installs (agents/package.json), beside the code, when they are there.
PROJECT_AGENTS = Path(__file__).resolve().parents[1] / "agents" / "bin"


class SmtpSettings(BaseModel):
    """The worker's mail server (GASTOWN_SMTP_*); the password is read from a file, never passed."""

    host: str | None = None
    port: int = 25
    sender: str = "gastown@localhost"
    username: str | None = None
    password_file: str | None = None
    starttls: bool = False


class Settings(BaseSettings):
    """Where Temporal is and where local work lives. Every field has an env var."""

    model_config = SettingsConfigDict(extra="ignore")

    temporal_address: str = Field("127.0.0.1:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", validation_alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field("gastown", validation_alias="GASTOWN_TASK_QUEUE")
    # The machine this worker runs on: its local polecats' work comes on the queue of this host.
    host: HostName = Field(default_factory=socket.gethostname, validation_alias="GASTOWN_HOST")
    home: Path = Field(Path.home() / ".gastown", validation_alias="GASTOWN_HOME")
    # Unset: a socket of this home's own (`tmux_socket_of`), so two homes never share a tmux server.
    tmux_socket: str = Field("", validation_alias="GASTOWN_TMUX_SOCKET")
    ui_port: int = Field(8233, validation_alias="GASTOWN_UI_PORT")
    # The embedded dev server's HTTP API (`gastown up`), where read commands read fastest.
    http_port: int = Field(7243, ge=1, le=65535, validation_alias="GASTOWN_HTTP_PORT")
    # HOST:PORT of Temporal's HTTP API, through which `get`, `describe` and `usage` read without
    # loading the SDK (`client.http_api`). Unset: the embedded runtime's (TEMPORAL_ADDRESS's host,
    # GASTOWN_HTTP_PORT), unless TEMPORAL_ADDRESS alone names another Temporal: read through the SDK.
    temporal_http_address: str | None = Field(
        None, pattern=r"^[^:\s]+:\d{1,5}$", validation_alias="TEMPORAL_HTTP_ADDRESS"
    )
    board_port: int = Field(8234, ge=0, le=65535, validation_alias="GASTOWN_BOARD_PORT")  # the town board's
    # Spans of every client call, workflow and activity over OTLP (client/tracing.py); off by default.
    tracing: bool = Field(False, validation_alias="GASTOWN_TRACING")
    # HOST:PORT where this process serves Prometheus metrics (`--metrics`); unset: none.
    metrics: str | None = Field(None, pattern=r"^[^:\s]*:\d{1,5}$", validation_alias="GASTOWN_METRICS")
    # How the worker reaches Kubernetes (for CR status and pods): a kubeconfig,
    # or, when unset, the in-cluster service account.
    kubeconfig: str | None = Field(None, validation_alias="KUBECONFIG")
    # The image of kubernetes-mode polecats, unless a polecat names its own.
    polecat_image: str = Field("gastown/polecat:0.1.0", validation_alias="GASTOWN_POLECAT_IMAGE")
    # A mounted secret (`ssh-privatekey`, `known_hosts`) for the worker's own git: what a Refinery
    # fetches and pushes with on a cluster. Unset: git as the environment has it.
    git_secret: str | None = Field(None, validation_alias="GASTOWN_GIT_SECRET")
    # Where the agent CLIs (claude, opencode, aider) are, put first on a local agent's PATH.
    agents_bin: Path | None = Field(
        PROJECT_AGENTS if PROJECT_AGENTS.is_dir() else None, validation_alias="GASTOWN_AGENTS_BIN"
    )
    # The model gateway local agents' traffic goes through (`worker.gateway`): usage counted, keys
    # kept from agents. Off: agents reach providers directly, and report usage only themselves.
    gateway: bool = Field(True, validation_alias="GASTOWN_GATEWAY")
    # 0: the port this home's gateway recorded (`gateway.json`), or a free one.
    gateway_port: int = Field(0, validation_alias="GASTOWN_GATEWAY_PORT")
    # Seconds the gateway holds an agent's request through a provider's limit; a longer limit
    # parks the polecat (stopped, then resumed at the reset).
    rate_limit_hold: float = Field(120.0, ge=0, validation_alias="GASTOWN_RATE_LIMIT_HOLD")
    # The providers whose agents are gated town-wide, and how many may run at once:
    # `anthropic=3,openai=10` (`contracts.providers`). Set it alike on every worker.
    provider_limits: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict, validation_alias="GASTOWN_PROVIDER_LIMITS"
    )
    # A JSON file of model prices over the shipped table (`launch.usage.PriceFile`).
    prices: Path | None = Field(None, validation_alias="GASTOWN_PRICES")
    # The mail server a Witness's email alerts go through. The password is read from a file
    # (a mounted secret), so it never sits in the environment.
    smtp_host: str | None = Field(None, validation_alias="GASTOWN_SMTP_HOST")
    smtp_port: int = Field(25, validation_alias="GASTOWN_SMTP_PORT")
    smtp_sender: str = Field("gastown@localhost", validation_alias="GASTOWN_SMTP_FROM")
    smtp_username: str | None = Field(None, validation_alias="GASTOWN_SMTP_USERNAME")
    smtp_password_file: str | None = Field(None, validation_alias="GASTOWN_SMTP_PASSWORD_FILE")
    smtp_starttls: bool = Field(False, validation_alias="GASTOWN_SMTP_STARTTLS")

    # True when the environment (or the caller) chose the ports: `gastown up` never moves those.
    _ports_chosen: bool = PrivateAttr(False)

    @field_validator("provider_limits", mode="before")
    @classmethod
    def _limits(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        from contracts.providers import parse_limits  # its module loads the SDK: only when limits are set

        return parse_limits(value)

    @model_validator(mode="after")
    def _of_this_home(self) -> Self:
        """What this home has of its own, where the environment does not say: its tmux socket,
        and the ports `gastown up` recorded for it when the default ones were another home's."""
        if not self.tmux_socket:
            self.tmux_socket = tmux_socket_of(self.home)
        self._ports_chosen = bool({"temporal_address", "ui_port", "http_port"} & self.model_fields_set)
        recorded = recorded_ports(self.home)
        if recorded and not self._ports_chosen:
            self.temporal_address, self.ui_port = recorded.temporal_address, recorded.ui_port
            self.http_port = recorded.http_port or self.http_port
        # This home's dev server serves its HTTP API there (unless a version before it started it),
        # and so does one whose HTTP port is set beside its address.
        own = "temporal_address" not in self.model_fields_set and (recorded is None or recorded.http_port)
        if self.temporal_http_address is None and (own or "http_port" in self.model_fields_set):
            self.temporal_http_address = f"{self.temporal_address.rsplit(':', 1)[0]}:{self.http_port}"
        return self

    @property
    def host_queue(self) -> str:
        """The queue only this host's workers poll."""
        return host_queue(self.task_queue, self.host)

    @property
    def ports_file(self) -> Path:
        return ports_file(self.home)

    @property
    def ports_chosen(self) -> bool:
        return self._ports_chosen

    def smtp(self) -> SmtpSettings:
        return SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            sender=self.smtp_sender,
            username=self.smtp_username,
            password_file=self.smtp_password_file,
            starttls=self.smtp_starttls,
        )

    @property
    def ui_url(self) -> str:
        host = self.temporal_address.rsplit(":", 1)[0]
        return f"http://{host}:{self.ui_port}"

    def workflow_url(self, workflow_id: str) -> str:
        """The Temporal UI page of one workflow."""
        return f"{self.ui_url}/namespaces/{self.temporal_namespace}/workflows/{quote(workflow_id, safe='')}"


def tmux_socket_of(home: Path) -> str:
    """The tmux socket (`tmux -L NAME`) of a home: its agents' server, and no other home's."""
    digest = hashlib.sha256(str(home.expanduser().absolute()).encode()).hexdigest()[:10]
    return f"gastown-{digest}"


def ports_file(home: Path) -> Path:
    """Where `gastown up` records the ports it chose for a home (every command of that home reads it)."""
    return home / "ports.json"


class Ports(NamedTuple):
    """What `gastown up` recorded for a home: where its dev server serves."""

    temporal_address: str
    ui_port: int
    http_port: int | None  # None: recorded by a version that served no HTTP API


def recorded_ports(home: Path) -> Ports | None:
    """The ports recorded for `home`, if any."""
    try:
        recorded = json.loads(ports_file(home).read_text())
        http_port = recorded.get("httpPort")
        return Ports(
            str(recorded["temporalAddress"]), int(recorded["uiPort"]), int(http_port) if http_port else None
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None


def record_ports(home: Path, temporal_address: str, ui_port: int, http_port: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    recorded = {"temporalAddress": temporal_address, "uiPort": ui_port, "httpPort": http_port}
    ports_file(home).write_text(json.dumps(recorded) + "\n")
