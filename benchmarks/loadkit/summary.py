"""The load run's figures: each step's lines as it ends (print_step), and once the last
answers and events are in, the table of every step, where the time went at the top
step, and the figures set against the goals (summarise)."""

from __future__ import annotations

import math
import os

import benchkit as kit

from .events import Events
from .limits import EVENT_P95_S, GOAL_RATE
from .steps import Step, ms


def print_step(s: Step, events_rate: float) -> None:
    """The lines of a step as it ends; events_rate: what the sources were asked for."""
    cpu = s.cpu
    ev = s.events
    kit.say(
        f"  {s.name:>11}: sent {s.scheduled / s.seconds:6.1f}/s  answered "
        f"{s.answered / s.seconds:6.1f}/s   page p50 {ms(s.p('page', 50)):>7} p95 {ms(s.p('page', 95)):>7}"
        f"   API p50 {ms(s.p('api', 50)):>7} p95 {ms(s.p('api', 95)):>7}   actions p95 "
        f"{ms(s.p('action', 95)):>7}   errors {s.error_count}  expected 4xx {sum(s.expected.values())}"
    )
    kit.say(
        f"  {'':>11}  events: {s.causes / s.seconds:5.1f} changes/s, {len(ev)} deliveries, "
        f"p50 {ms(kit.percentile(ev, 50))} p95 {ms(kit.percentile(ev, 95))}, missed {s.missed}"
        f" (source {s.source_changes / s.seconds:.1f}/s of {events_rate:g}, each "
        f"applied in p50 {ms(kit.percentile(s.source_apply, 50))} p95 "
        f"{ms(kit.percentile(s.source_apply, 95))}); "
        f"{s.dropped} messages dropped by the channel layer (over capacity)"
    )
    kit.say(
        f"  {'':>11}  database: {max(s.db_connections, default=0)} connections at most, "
        f"{s.db_sessions / s.seconds:.0f} new connections/s, {s.db_xacts / s.seconds:.0f} "
        f"transactions/s; generator lag p95 {ms(kit.percentile(s.lag, 95))}"
    )
    kit.say(
        f"  {'':>11}  CPU, % of one core: web {cpu['web'] * 100:.0f}, workers "
        f"{cpu['workers'] * 100:.0f}, watcher {cpu['watcher'] * 100:.0f}, event source "
        f"{cpu.get('event source', 0) * 100:.0f}, postgres (all databases) "
        f"{cpu['postgres'] * 100:.0f}, redis {cpu['redis'] * 100:.0f}, load generator "
        f"{cpu['load generator'] * 100:.0f}; the machine {cpu['machine busy'] * 100:.0f}% busy "
        f"(of {os.cpu_count()} cores)"
    )
    if s.errors:
        kit.say(
            "  {:>11}  errors: ".format("")
            + ", ".join(f"{k} x{v}" for k, v in s.errors.most_common(6))
        )
    if s.log_errors:
        kit.say(f"  {'':>11}  {s.log_errors} error lines in the servers' logs")


def summarise(done: list[Step], events: Events, reused: int, report: kit.Report) -> None:
    """The figures of the steps run, once the last answers and events were in."""
    kit.say("\n  per step, once the last answers and events were in (times p50/p95):")
    step_table(done)
    where_the_time_goes(done[-1])
    kit.say(
        f"  websocket messages: {events.other_messages} other than vm.update, "
        f"{events.unmatched} vm.update without a cause of ours (details refreshed by "
        f"page views, jobs read back); event source errors: "
        + (", ".join(f"{k} x{v}" for k, v in events.source_errors.items()) or "none")
    )
    if reused:
        kit.say(f"  {reused} actions on VMs acted on before (fresh ones ran out)")
    report_steps(done, report)
    report_ceiling(done, report)
    gen = max(s.cpu["load generator"] for s in done)
    report.add("load generator CPU, busiest step", f"{gen * 100:.0f}% of one core")
    lag = max(kit.percentile(s.lag, 95) for s in done)
    report.add("load generator lag p95 (due to sent), worst step", ms(lag))


STEP_COLUMNS = (
    "offered",
    "answered",
    "page",
    "API",
    "actions",
    "errors",
    "4xx",
    "changes/s",
    "events",
    "missed",
    "dropped",
    "db conns",
    "new conn/s",
    "generator",
    "machine",
)


def step_table(done: list[Step]) -> None:
    """One row per step, each column right-aligned to its widest cell."""
    rows = [STEP_COLUMNS]
    for s in done:
        rows.append(
            (
                f"{s.rate:.0f}/s",
                f"{s.answered / s.seconds:.1f}/s",
                f"{ms(s.p('page', 50))}/{ms(s.p('page', 95))}",
                f"{ms(s.p('api', 50))}/{ms(s.p('api', 95))}",
                f"{ms(s.p('action', 50))}/{ms(s.p('action', 95))}",
                str(s.error_count),
                str(sum(s.expected.values())),
                f"{s.causes / s.seconds:.1f}",
                f"{ms(kit.percentile(s.events, 50))}/{ms(kit.percentile(s.events, 95))}",
                f"{s.missed}/{len(s.events)}",
                str(s.dropped),
                str(max(s.db_connections, default=0)),
                f"{s.db_sessions / s.seconds:.0f}",
                f"{s.cpu['load generator'] * 100:.0f}%",
                f"{s.cpu['machine busy'] * 100:.0f}%",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        kit.say("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def where_the_time_goes(top: Step) -> None:
    """Each kind of request's latency at the last step run."""
    kit.say(f"\n  where the time goes at {top.name} (p50 / p95):")
    for kind, times in sorted(top.kinds.items()):
        kit.say(
            f"    {kind:<16} n={len(times):5d}  {ms(kit.percentile(times, 50)):>7} / "
            f"{ms(kit.percentile(times, 95)):>7}"
        )


def report_steps(done: list[Step], report: kit.Report) -> None:
    """Each step against the limits: p95 of pages and API, no error, events within 1 s."""
    for s in done:
        ev95 = kit.percentile(s.events, 95)
        ok = s.within() and (math.isnan(ev95) or ev95 < EVENT_P95_S)
        report.add(
            f"offered {s.rate:.0f} req/s (answered {s.answered / s.seconds:.0f})",
            f"page {ms(s.p('page', 95))}, API {ms(s.p('api', 95))}, "
            f"{s.error_count} err, events {ms(ev95)} ({s.missed}/{len(s.events)} missed)",
            "p95 page<150 API<100 ms, 0 err, events<1 s",
            ok,
        )


def report_ceiling(done: list[Step], report: kit.Report) -> None:
    """The highest rate within the limits, where they were crossed, and the worst event
    delivery of the steps within them."""
    first_out = next((s for s in done if not s.within()), None)
    best = 0.0
    for s in done:
        if not s.within():
            break
        best = s.rate
    crossed = (
        f"; crossed at {first_out.rate:.0f} ({first_out.crossing()})"
        if first_out is not None
        else "; never crossed"
    )
    report.add(
        "highest offered rate within the limits",
        f"{best:.0f} req/s{crossed}",
        f">= {GOAL_RATE:.0f} req/s",
        best >= GOAL_RATE,
    )
    ev_ok = [s for s in done if s.within()]
    if ev_ok:
        worst = max(ev_ok, key=lambda s: kit.percentile(s.events, 95))
        ev95 = kit.percentile(worst.events, 95)
        report.add(
            "event delivery p95, worst step within the limits",
            f"{ms(ev95)} at {worst.rate:.0f} req/s ({len(worst.events)} deliveries, "
            f"{worst.missed} missed)",
            "< 1 s",
            not math.isnan(ev95) and ev95 < EVENT_P95_S,
        )
