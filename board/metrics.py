"""The town's gauges, from the board's one read of the town a second (`board.town`).

Served with the Temporal SDK's metrics on the board's `--metrics` address (its
runtime's meter). Labels are bounded: phase, rig, convoy, refinery, alert type;
never a polecat's name. A label set the town no longer has is set to 0, so a
series ends at zero rather than keeping its last value.
"""

from __future__ import annotations

from collections import Counter

from temporalio.common import MetricGauge, MetricMeter

from board.town import Town

Labels = tuple[tuple[str, str], ...]


class _Gauge:
    def __init__(self, meter: MetricMeter, name: str, description: str) -> None:
        self.gauge: MetricGauge = meter.create_gauge(name, description)
        self.seen: set[Labels] = set()

    def set_all(self, values: Counter[Labels]) -> None:
        for labels in self.seen - set(values):
            self.gauge.with_additional_attributes(dict(labels)).set(0)
        for labels, value in values.items():
            self.gauge.with_additional_attributes(dict(labels)).set(value)
        self.seen = set(values)


class TownMetrics:
    def __init__(self, meter: MetricMeter) -> None:
        self.polecats = _Gauge(meter, "gastown_polecats", "Polecats by phase and rig.")
        self.convoy_beads = _Gauge(meter, "gastown_convoy_beads", "A convoy's beads by state.")
        self.queue = _Gauge(meter, "gastown_refinery_queue_depth", "Branches in a refinery's queue.")
        self.alerts = _Gauge(meter, "gastown_witness_alerts", "Open Witness alerts by type.")

    def record(self, town: Town) -> None:
        self.polecats.set_all(Counter((("phase", cell.phase), ("rig", cell.rig)) for cell in town.polecats))
        beads: Counter[Labels] = Counter()
        for convoy in town.convoys:
            for state, count in (
                ("completed", convoy.completed),
                ("failed", convoy.failed),
                ("in_progress", convoy.in_progress),
                ("total", convoy.total),
            ):
                beads[(("convoy", convoy.key), ("state", state))] = count
        self.convoy_beads.set_all(beads)
        queues: Counter[Labels] = Counter({(("refinery", name),): 0 for name in town.refineries})
        queues.update((("refinery", entry.refinery),) for entry in town.queue)
        self.queue.set_all(queues)  # an empty queue is a 0, not a missing series
        self.alerts.set_all(Counter((("type", alert.type),) for alert in town.alerts))
