"""Repeats held back: the same kind and target again within the window (a host that
flaps) is counted on the notifications already sent, and one summary per user tells the
count once the window ends.

The notifications themselves are the memory: a repeat is an update of the rows sent
within the window, so every process sees the same count and nothing outlives the rows.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from panel.celery import app
from panel.models import Notification, Subscription

log = logging.getLogger(__name__)

SUMMARY_TASK = "panel.summarize_notifications"


def window() -> timedelta:
    return timedelta(seconds=settings.PANEL_NOTIFY_WINDOW_SECONDS)


def held_back(kind: str, target: str, now: datetime | None = None) -> bool:
    """Whether this event repeats one told within the window: then it is counted on the
    notifications of the first, and not told again now."""
    since = (now or timezone.now()) - window()
    first = Notification.objects.filter(
        kind=kind, target=target[:200], summary=False, created__gte=since
    )
    return first.update(repeats=F("repeats") + 1) > 0


def summarize_later(kind: str, target: str) -> None:
    """Ask a worker for the summary once the window of this first notification ends."""

    def queue() -> None:
        try:
            app.send_task(SUMMARY_TASK, args=[kind, target], countdown=window().total_seconds() + 1)
        except Exception as exc:  # noqa: BLE001 - kombu's errors vary with the transport
            log.warning("the summary of %s %s could not be queued: %s", kind, target, exc)

    transaction.on_commit(queue)


def summarize(kind: str, target: str, now: datetime | None = None) -> list[Notification]:
    """One summary for each notification of kind and target whose window has ended with
    repeats held back: "went down 5 more times in the last 10 minutes", sent where the
    first went."""
    from .core import send  # core imports this module for held_back()

    ended = (now or timezone.now()) - window()
    minutes = round(window().total_seconds() / 60) or 1
    made = []
    with transaction.atomic():
        firsts = Notification.objects.select_for_update(of=("self",)).filter(
            kind=kind, target=target[:200], summary=False, repeats__gt=0, created__lt=ended
        )
        for first in firsts.select_related("user", "project"):
            times = "once more" if first.repeats == 1 else f"{first.repeats} more times"
            summary = Notification.objects.create(
                user=first.user,
                kind=kind,
                title=f"{first.title}: {times} in {minutes} minutes"[:200],
                body=(
                    f"{first.title}, then again {times} within {minutes} minutes of it. "
                    "Repeats within that time are told in one message like this one."
                ),
                link=first.link,
                target=first.target,
                project=first.project,
                summary=True,
            )
            subs = Subscription.objects.filter(deliveries__notification=first).distinct()
            send(summary, subs)
            Notification.objects.filter(pk=first.pk).update(repeats=0)
            made.append(summary)
    return made
