"""What is measured of each step of the load run (Step: latencies by category and kind,
errors, event deliveries, CPU, database use), the limits a step is within or crosses,
and which step a moment belongs to (Clock)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import benchkit as kit

from .limits import API_P95_S, PAGE_P95_S


@dataclass
class Step:
    name: str
    rate: float
    seconds: float
    t0: float = 0.0
    t1: float = 0.0
    scheduled: int = 0
    answered: int = 0  # answers received while the step ran
    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    kinds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)
    events: list[float] = field(default_factory=list)
    causes: int = 0
    missed: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    db_connections: list[int] = field(default_factory=list)  # ours, sampled twice a second
    db_sessions: int = 0  # connections made to our database (pg_stat_database)
    db_xacts: int = 0
    source_changes: int = 0
    source_apply: list[float] = field(default_factory=list)  # the source's change + apply
    dropped: int = 0  # channel-layer messages dropped (over capacity)
    log_errors: int = 0
    stopped_early: str = ""

    def p(self, what: str, pct: float) -> float:
        return kit.percentile(self.lat.get(what, []), pct)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + self.log_errors

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.lat.values()) + sum(self.errors.values())

    def within(self) -> bool:
        """The brief's limits: page p95 < 150 ms, API p95 < 100 ms, no error."""
        page, api = self.p("page", 95), self.p("api", 95)
        return (
            not math.isnan(page)
            and page < PAGE_P95_S
            and (math.isnan(api) or api < API_P95_S)
            and self.error_count == 0
        )

    def crossing(self) -> str:
        why = []
        if not self.p("page", 95) < PAGE_P95_S:
            why.append(f"page p95 {ms(self.p('page', 95))}")
        if not (math.isnan(self.p("api", 95)) or self.p("api", 95) < API_P95_S):
            why.append(f"API p95 {ms(self.p('api', 95))}")
        if self.error_count:
            why.append(f"{self.error_count} errors")
        return ", ".join(why)


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "inf"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.0f} s"


class Clock:
    """Which step a moment belongs to."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.before = Step("before", 0, 0)

    def at(self, t: float) -> Step:
        for step in reversed(self.steps):
            if step.t0 <= t:
                return step
        return self.steps[0] if self.steps else self.before
