"""The pure parts of backup schedules over controlled timestamps: when a cron schedule
fires next, and which backups keep-last / daily / weekly retention keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vms.services.retention import keep, next_run, parse_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cron(minute="0", hour="2", day_of_month="*", month_of_year="*", day_of_week="*"):
    return parse_cron(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
    )


def test_it_finds_the_next_minute_a_cron_schedule_allows():
    nightly = cron()
    assert next_run(nightly, at("2026-11-25 01:59:30")) == at("2026-11-25 02:00")
    # Strictly after: a schedule that just fired waits for the next day.
    assert next_run(nightly, at("2026-11-25 02:00")) == at("2026-11-26 02:00")
    quarter = cron(minute="*/15", hour="*")
    assert next_run(quarter, at("2026-11-25 10:16")) == at("2026-11-25 10:30")
    assert next_run(quarter, at("2026-11-25 23:50")) == at("2026-11-26 00:00")
    # Sunday is 0, as in cron: 2026-11-29 is a Sunday.
    assert next_run(cron(day_of_week="0"), at("2026-11-25 12:00")) == at("2026-11-29 02:00")
    assert next_run(cron(day_of_week="mon-fri"), at("2026-11-27 03:00")) == at("2026-11-30 02:00")
    assert next_run(cron(day_of_month="1", month_of_year="1"), at("2026-11-25")) == at(
        "2027-01-01 02:00"
    )
    assert next_run(cron(day_of_month="29", month_of_year="2"), at("2026-03-01")) == at(
        "2028-02-29 02:00"
    )
    with pytest.raises(ValueError, match="^day_of_month: .*never occurs"):
        cron(day_of_month="31", month_of_year="2")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"minute": "61"}, "minute"),
        ({"hour": "x"}, "hour"),
        ({"day_of_week": "someday"}, "day_of_week"),
        ({"month_of_year": "13"}, "month_of_year"),
        ({"minute": ""}, "minute"),
    ],
)
def test_it_names_the_bad_cron_field(fields, named):
    with pytest.raises(ValueError, match=f"^{named}: "):
        cron(**fields)


def test_it_keeps_the_last_n_backups():
    times = [at("2026-11-01") + timedelta(hours=h) for h in range(5)]
    assert keep(times, last=2) == {3, 4}
    assert keep(list(reversed(times)), last=2) == {0, 1}  # by time, not by position
    assert keep(times, last=9) == {0, 1, 2, 3, 4}
    assert keep(times) == {0, 1, 2, 3, 4}  # no rule: nothing is pruned
    assert keep([], last=3) == set()


def test_it_keeps_the_newest_backup_of_each_recent_day_and_week():
    # Four backups a day, at 00, 06, 12, 18 h, from Monday 2026-11-02 to Sunday 2026-11-22.
    start = at("2026-11-02")
    times = [start + timedelta(hours=6 * i) for i in range(21 * 4)]
    newest_of_day = {i for i in range(len(times)) if times[i].hour == 18}

    kept = keep(times, daily=3)
    assert sorted(times[i] for i in kept) == [
        at("2026-11-20 18:00"),
        at("2026-11-21 18:00"),
        at("2026-11-22 18:00"),
    ]
    kept = keep(times, weekly=2)
    assert sorted(times[i] for i in kept) == [at("2026-11-15 18:00"), at("2026-11-22 18:00")]

    kept = keep(times, last=2, daily=2, weekly=3)
    assert sorted(times[i] for i in kept) == [
        at("2026-11-08 18:00"),  # week 45
        at("2026-11-15 18:00"),  # week 46
        at("2026-11-21 18:00"),  # day
        at("2026-11-22 12:00"),  # last 2
        at("2026-11-22 18:00"),  # last, day and week
    ]
    assert kept <= newest_of_day | {len(times) - 2}

    # Days without backups do not count: daily=2 reaches back over the gap.
    sparse = [at("2026-11-01 09:00"), at("2026-11-05 09:00"), at("2026-11-05 21:00")]
    assert keep(sparse, daily=2) == {0, 2}
