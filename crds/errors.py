"""Validation errors as a user reads them: one line per problem."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from crds.common import FieldError, SecretValueError


class InvalidResource(ValueError):
    """A manifest broke one or more rules; `problems` holds one line each.

    With a `ref` (`Polecat default/p1`) each line is prefixed by it; without
    one (a whole batch), the problems are complete lines already.
    """

    def __init__(self, ref: str, problems: list[str]) -> None:
        self.ref = _printable(ref)
        # A name or field of the user's may hold a newline or a control character: shown escaped,
        # each problem stays one line (on a terminal, in an Event).
        self.problems = [_printable(problem) for problem in problems]
        super().__init__("\n".join(f"{self.ref}: {problem}" if ref else problem for problem in self.problems))


def _printable(text: str) -> str:
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_errors(error: ValidationError) -> list[str]:
    """Each pydantic error as `path: rule (got value)`, in the spec's names."""
    lines = []
    for item in error.errors():
        path = [f"[{part}]" if isinstance(part, int) else str(part) for part in item["loc"]]
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            path.append(cause.path)
            rule = cause.rule
        else:
            rule = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            rule = "unknown field"
        elif item["type"] == "missing":
            rule = "required"
        elif item["type"] == "literal_error":
            # pydantic reports a wrong literal as "Input should be ..." already.
            pass
        where = ".".join(path).replace(".[", "[") or "(root)"
        shown = (
            ""
            if item["type"] in ("missing", "extra_forbidden")
            or isinstance(cause, FieldError | SecretValueError)
            else f" (got {_show(item.get('input'))})"
        )
        lines.append(f"{where}: {rule}{shown}")
    return lines
