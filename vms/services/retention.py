"""Pure functions of backup schedules: when a cron schedule fires next, and which backups a
retention policy (keep last N, daily D, weekly W) keeps. No I/O, so they are unit-tested
over controlled timestamps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.schedules import crontab

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


@dataclass(frozen=True)
class Cron:
    """A parsed cron schedule: the allowed values of each field (day_of_week 0 = Sunday)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]


def parse_cron(**fields: str) -> Cron:
    """Parse the five cron fields as celery's crontab does; ValueError names the bad field."""
    for name in CRON_FIELDS:
        value = (fields.get(name) or "").strip()
        if not value:
            raise ValueError(f"{name}: give a value, such as * or 0.")
        try:
            crontab(**{name: value})
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    try:
        parsed = crontab(**{name: fields[name].strip() for name in CRON_FIELDS})
    except ValueError as exc:  # a day that no chosen month has, e.g. 31 February
        raise ValueError(f"day_of_month: {exc}") from None
    return Cron(
        minutes=frozenset(parsed.minute),
        hours=frozenset(parsed.hour),
        days=frozenset(parsed.day_of_month),
        months=frozenset(parsed.month_of_year),
        weekdays=frozenset(parsed.day_of_week),
    )


def next_run(cron: Cron, after: datetime) -> datetime | None:
    """The first minute strictly after `after` (in its timezone) that every field allows;
    None when no date in the next eight years matches (29 February on a Monday, say).
    Day of month and day of week must both match (celery's rule; cron ORs them)."""
    start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for _ in range(366 * 8):
        # Python's weekday(): Monday 0; cron's: Sunday 0.
        if (
            day.month in cron.months
            and day.day in cron.days
            and (day.weekday() + 1) % 7 in cron.weekdays
        ):
            for hour in sorted(cron.hours):
                for minute in sorted(cron.minutes):
                    moment = day.replace(hour=hour, minute=minute)
                    if moment >= start:
                        return moment
        day = day + timedelta(days=1)
    return None


def keep(times: Sequence[datetime], *, last: int = 0, daily: int = 0, weekly: int = 0) -> set[int]:
    """The indexes of the backups (taken at times) that the policy keeps.

    last: the N newest. daily: the newest backup of each of the D most recent days that have
    one. weekly: the newest of each of the W most recent ISO weeks that have one. A backup
    kept by any rule stays. A policy of all zeros keeps everything rather than nothing."""
    order = sorted(range(len(times)), key=lambda i: times[i], reverse=True)
    if not (last or daily or weekly):
        return set(order)
    kept = set(order[:last])
    for count, bucket in ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2])):
        seen: list[object] = []
        for i in order:
            key = bucket(times[i])
            if key in seen:
                continue
            if len(seen) == count:
                break
            seen.append(key)
            kept.add(i)
    return kept
