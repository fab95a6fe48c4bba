"""How resources look in a terminal: kubectl-style tables and descriptions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crds import Polecat, Resource
from crds.usage import Tokens, Usage

if TYPE_CHECKING:
    from contracts.providers import ProviderStatus


def yaml_of(data: Any) -> str:
    """YAML as kubectl prints it, keys in their order."""
    import yaml  # only what prints YAML loads it

    return yaml.safe_dump(data, sort_keys=False)


def _path(wire: dict[str, Any], json_path: str) -> Any:
    node: Any = wire
    for part in json_path.strip(".").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's compact age: 42s, 5m, 3h, 2d."""
    if not timestamp:
        return "<unknown>"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "<none>"
    text = str(value).splitlines()[0] if str(value) else ""
    return text if len(text) <= 60 else text[:57] + "..."


def table(model: type[Resource], resources: list[Resource], wide: bool, all_namespaces: bool) -> str:
    """The resources as `kubectl get` prints them."""
    columns = [
        (name, path) for name, path, _, priority in model.INFO.printer_columns if wide or priority == 0
    ]
    header = (
        (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + [name.upper() for name, _ in columns] + ["AGE"]
    )
    rows = [header]
    for resource in resources:
        wire = resource.to_wire()
        row = [resource.namespace] if all_namespaces else []
        row += [resource.name] + [_cell(_path(wire, path)) for _, path in columns]
        row.append(age(_path(wire, ".metadata.creationTimestamp")))
        rows.append(row)
    return _columns(rows)


def _columns(rows: list[list[str]]) -> str:
    """Rows as kubectl prints a table: columns three spaces apart, no trailing space."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in rows
    )


def describe(resource: Resource, ui_link: str) -> str:
    """A resource for a person: identity, spec, status, conditions, where to look next."""
    wire = resource.to_wire()
    status = wire.get("status", {})
    lines = [f"Name:         {resource.name}"]
    if resource.INFO.namespaced:
        lines.append(f"Namespace:    {resource.namespace}")
    lines += [
        f"Kind:         {resource.INFO.kind}",
        f"UID:          {resource.metadata.uid or '<none>'}",
        f"Created:      {wire['metadata'].get('creationTimestamp', '<unknown>')}",
        f"Phase:        {status.get('phase', '<none>')}",
    ]
    if status.get("message"):
        first, *rest = str(status["message"]).splitlines()
        lines.append(f"Message:      {first}")
        lines += [f"              {line}" for line in rest]
    lines.append("Spec:")
    lines += ["  " + line for line in yaml_of(wire["spec"]).splitlines()]
    tables = (
        "phase",
        "message",
        "conditions",
        "polecats",
        "queue",
        "recent",
        "alerts",
        "usage",
        "conversation",
    )
    details = {k: v for k, v in status.items() if k not in tables}
    if details:
        lines.append("Status:")
        lines += ["  " + line for line in yaml_of(details).splitlines()]
    lines += _section(
        "Polecats",  # a convoy's
        ["NAME", "BEAD", "PHASE"],
        [[p["name"], p["beadID"], p["phase"]] for p in status.get("polecats", [])],
    )
    lines += _section(
        "Queue",  # a refinery's
        ["BRANCH", "POLECAT", "BEAD", "STATUS", "APPROVED", "MESSAGE"],
        [
            [
                q["branch"],
                q.get("polecat", ""),
                q.get("beadID", ""),
                q["status"],
                "yes" if q.get("approved") else "",
                _cell(q.get("message")),
            ]
            for q in status.get("queue", [])
        ],
    )
    lines += _section(
        "Recent",
        ["WHEN", "BRANCH", "OUTCOME", "COMMIT", "MESSAGE"],
        [
            [r["timestamp"], r["branch"], r["outcome"], r.get("commit", "")[:12], _cell(r.get("message"))]
            for r in status.get("recent", [])
        ],
    )
    lines += _section(
        "Alerts",  # a witness's
        ["POLECAT", "TYPE", "SINCE", "MESSAGE"],
        [[a["polecat"], a["type"], a["since"], _cell(a.get("message"))] for a in status.get("alerts", [])],
    )
    if status.get("usage"):
        lines += ["Usage:", *_rows(_usage_rows(Usage.model_validate(status["usage"])))]
    lines += _section(
        "Follow-ups",  # a polecat's nudges
        ["WHEN", "FROM", "OUTCOME", "MESSAGE", "DETAIL"],
        [
            [f["time"], f.get("source", ""), f["outcome"], _cell(f["message"]), _cell(f.get("detail"))]
            for f in status.get("conversation", [])
        ],
    )
    lines += _section(
        "Conditions",
        ["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"],
        [
            [
                c["type"],
                c["status"],
                c.get("reason", ""),
                c.get("lastTransitionTime", ""),
                _cell(c.get("message")),
            ]
            for c in status.get("conditions", [])
        ],
    )
    lines.append(f"Temporal UI:  {ui_link}")
    return "\n".join(lines)


USAGE_HEADER = ["REQUESTS", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE", "COST"]


def _counts(tokens: Tokens, cost: str) -> list[str]:
    numbers = (
        tokens.requests,
        tokens.input_tokens,
        tokens.output_tokens,
        tokens.cache_read_tokens,
        tokens.cache_write_tokens,
    )
    return [f"{number:,}" for number in numbers] + [cost]


def _usage_rows(usage: Usage) -> list[list[str]]:
    """A usage by model, then its total."""
    rows = [["MODEL", *USAGE_HEADER]]
    rows += [[model.model, *_counts(model, Usage.of([model]).cost)] for model in usage.models]
    return [*rows, ["TOTAL", *_counts(usage, usage.cost)]]


def rig_usage(live: list[Polecat]) -> str:
    """A rig's describe: what its live polecats have spent so far, by model."""
    usage = Usage.total(polecat.status.usage for polecat in live if polecat.status)
    if not usage.models:
        return f"Usage:        nothing yet by its {len(live)} live polecats"
    return "\n".join([f"Usage of its {len(live)} live polecats:", *_rows(_usage_rows(usage))])


def usage_report(polecats: list[Polecat]) -> str:
    """`gastown usage`: what the polecats spent, by model and by rig, and in all."""
    by_rig: dict[str, list[Usage | None]] = {}
    for polecat in polecats:
        if polecat.status and polecat.status.usage:
            by_rig.setdefault(polecat.spec.rig, []).append(polecat.status.usage)
    if not by_rig:
        return "No usage recorded."
    usages = [usage for usages_of_rig in by_rig.values() for usage in usages_of_rig]
    rigs = [["RIG", "POLECATS", *USAGE_HEADER]]
    for rig, usages_of_rig in sorted(by_rig.items()):
        total = Usage.total(usages_of_rig)
        rigs.append([rig, str(len(usages_of_rig)), *_counts(total, total.cost)])
    return "\n".join(["By model:", *_rows(_usage_rows(Usage.total(usages))), "", "By rig:", *_rows(rigs)])


def provider_table(gates: list[ProviderStatus]) -> str:
    """`gastown get providers`: each gated provider's slots, queue and pause."""
    rows = [["NAME", "CAP", "RUNNING", "WAITING", "PAUSED UNTIL"]]
    for gate in gates:
        paused = gate.paused_until.isoformat() if gate.paused_until else "<none>"
        rows.append([gate.gate, str(gate.cap), str(len(gate.running)), str(len(gate.waiting)), paused])
    return _columns(rows)


def _section(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A titled table of a describe, or nothing when it has no rows."""
    return [f"{title}:", *_rows([header, *rows])] if rows else []


def _rows(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in rows
    ]
