"""Building blocks shared by the six kinds: base models, field types, errors.

Every model serialises with the spec's camelCase names and refuses unknown
fields, so a typo in a manifest is an error instead of a silently ignored key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

GROUP = "gastown.gastown.io"
VERSION = "v1alpha1"
API_VERSION: Literal["gastown.gastown.io/v1alpha1"] = "gastown.gastown.io/v1alpha1"

# Bounds that keep one resource well inside Temporal's payload limits (2 MB
# error, 256 KB warning): a manifest larger than this is refused at the door.
MAX_TEXT = 64 * 1024


class FieldError(ValueError):
    """A rule broken by one field, raised from a cross-field validator.

    `path` is relative to the model that raises it, in the spec's camelCase
    names; the error formatter joins it to the model's own location.
    """

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"{path}: {rule}")
        self.path = path
        self.rule = rule


class SecretValueError(ValueError):
    """A rule broken by a field whose value is a credential: the error never shows the value."""


def to_spec_name(field: str) -> str:
    """The spec's camelCase name of a field: `bead_id` -> `beadID`, `git_url` -> `gitURL`,
    `max_cost_usd` -> `maxCostUSD`."""
    name = to_camel(field)
    for suffix, upper in (("Id", "ID"), ("Url", "URL"), ("Usd", "USD")):
        if name.endswith(suffix):
            name = name[: -len(suffix)] + upper
    return name


class ApiModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, strict keys."""

    model_config = ConfigDict(
        alias_generator=to_spec_name,
        populate_by_name=True,
        extra="forbid",
        defer_build=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The model as Kubernetes would show it: camelCase, no empty fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- field types ---------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_dns1123(value: str) -> str:
    if len(value) > 63:
        raise ValueError("must be at most 63 characters (DNS-1123 label)")
    if not _DNS1123_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


DnsName = Annotated[
    str,
    AfterValidator(_check_dns1123),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": _DNS1123_LABEL.pattern}),
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$|^0$")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(value: str) -> timedelta:
    """A Go duration (`30s`, `10m`, `1h30m`, `250ms`) as a timedelta."""
    if not _DURATION.match(value):
        raise ValueError("must be a Go duration such as 30s, 10m or 1h30m")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value))
    return timedelta(seconds=seconds)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema({"type": "string", "pattern": _DURATION.pattern}),
]

_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_branch_name(value: str) -> str:
    """Enforce `git check-ref-format --branch` without running git.

    The rules are git's (see git-check-ref-format(1)); a unit test compares
    this function with the real git binary on a corpus of names.
    """
    problem = None
    if not value:
        problem = "must not be empty"
    elif value.startswith("-"):
        problem = "must not start with '-'"
    elif _BAD_REF_CHARS.search(value):
        problem = "must not contain spaces, control characters or any of ~ ^ : ? * [ \\"
    elif ".." in value or "@{" in value or "//" in value:
        problem = "must not contain '..', '@{' or '//'"
    elif value.startswith("/") or value.endswith("/") or value.endswith("."):
        problem = "must not start or end with '/' or end with '.'"
    elif any(part.startswith(".") or part.endswith(".lock") for part in value.split("/")):
        problem = "no path component may start with '.' or end with '.lock'"
    if problem:
        raise ValueError(f"not a valid git branch name ({problem})")
    return value


MAX_BRANCH = 255  # git allows longer names, but no branch a person names is longer
BranchName = Annotated[
    str,
    Field(max_length=MAX_BRANCH),
    AfterValidator(check_branch_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_BRANCH}),
]


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[
    datetime,
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

LimitedText = Annotated[str, Field(max_length=MAX_TEXT)]

# A machine a worker runs on: what `hostname` prints, or the name GASTOWN_HOST gives it.
HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
HostName = Annotated[str, Field(pattern=HOST_PATTERN, max_length=63)]


# --- metadata, conditions, the resource envelope -------------------------


# Kubernetes' own limits, which its API server enforces; `gastown apply` holds to the same.
MAX_ANNOTATIONS = 256 * 1024  # bytes, keys and values together
MAX_LABEL_VALUE = 63


def annotations_size(annotations: Mapping[str, object]) -> int:
    """Bytes of a resource's annotations, keys and values, as Kubernetes counts them."""
    return sum(len(str(key).encode()) + len(str(value).encode()) for key, value in annotations.items())


def _check_annotations(value: dict[str, str]) -> dict[str, str]:
    size = annotations_size(value)
    if size > MAX_ANNOTATIONS:
        raise ValueError(f"Too long: must have at most {MAX_ANNOTATIONS} bytes (these have {size})")
    return value


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    for key, text in value.items():
        if len(text) > MAX_LABEL_VALUE:
            raise ValueError(f"{key}: a label value must be no more than {MAX_LABEL_VALUE} characters")
    return value


class ObjectMeta(BaseModel):
    """The part of Kubernetes' ObjectMeta that Gas Town reads.

    Unknown metadata keys (managedFields, ...) are ignored, as the API server
    owns them.
    """

    model_config = ConfigDict(
        alias_generator=to_spec_name, populate_by_name=True, extra="ignore", defer_build=True
    )

    name: DnsName
    namespace: DnsName | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: Timestamp | None = None
    labels: Annotated[dict[str, str], AfterValidator(_check_labels)] = Field(default_factory=dict)
    annotations: Annotated[dict[str, str], AfterValidator(_check_annotations)] = Field(default_factory=dict)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A Kubernetes-style condition; lastTransitionTime moves only with status."""

    type: str
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    last_transition_time: Timestamp | None = None


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> list[Condition]:
    """The conditions with `type_` set; its transition time moves only if status does."""
    result = []
    found = False
    for condition in conditions:
        if condition.type == type_:
            found = True
            moved = condition.status != status
            condition = Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now if moved else condition.last_transition_time,
            )
        result.append(condition)
    if not found:
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
            )
        )
    return result


def short_uid(uid: str | None) -> str:
    """Eight characters of a uid: what makes a session, pod or worktree name unique per incarnation."""
    return (uid or "nouid").replace("-", "")[:8]


@dataclass(frozen=True)
class KindInfo:
    """How a kind is named and shown: what the CRD and the CLI need. A plain record, written in
    the code: no model to build when the kinds are imported (every CLI command imports them)."""

    kind: str
    plural: str
    short_names: list[str]
    namespaced: bool
    # (name, JSONPath, type, priority): priority 1 columns show with -o wide.
    printer_columns: list[tuple[str, str, str, int]]
    # The phase a new resource of the kind is filed under (its status model's default), until
    # its workflow publishes one: the `GastownPhase` search attribute starts with it.
    initial_phase: str

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def names(self) -> set[str]:
        """Every word a user may type for this kind."""
        return {self.kind.lower(), self.singular, self.plural, *self.short_names}


class Resource(BaseModel):
    """The envelope of every kind: apiVersion, kind, metadata, spec, status."""

    model_config = ConfigDict(
        alias_generator=to_spec_name, populate_by_name=True, extra="forbid", defer_build=True
    )

    INFO: ClassVar[KindInfo]

    api_version: Literal["gastown.gastown.io/v1alpha1"] = API_VERSION
    metadata: ObjectMeta

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def ref(self) -> str:
        """How a person names this resource: `Polecat default/p1`, `Rig athena`."""
        return self.ref_of(self.namespace, self.name)

    @classmethod
    def ref_of(cls, namespace: str | None, name: str) -> str:
        """How a person names a resource of this kind (`Rig athena`: cluster-scoped kinds have no namespace)."""
        if cls.INFO.namespaced:
            return f"{cls.INFO.kind} {namespace or 'default'}/{name}"
        return f"{cls.INFO.kind} {name}"

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
