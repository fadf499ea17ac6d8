"""emit(): a fact becomes notifications for those who subscribed to it and may see it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Model, Q

from panel import events
from panel.celery import app
from panel.choices import DeliveryChannel
from panel.models import Delivery, Notification, Project, Subscription
from panel.permissions import VIEW, allowed, is_admin, signed_in

from . import throttle

if TYPE_CHECKING:
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

DELIVER_TASK = "panel.deliver_notification"


@dataclass(frozen=True)
class Event:
    """A fact worth telling. about: what a reader must be allowed to see (a job, a VM, a
    project); None for the hosts, which only administrators hear of."""

    kind: str
    title: str
    target: str
    about: Model | None
    project: Project | None = None
    body: str = ""
    link: str = ""


def serialize(notification: Notification) -> dict[str, Any]:
    """A notification as the API, the bell and a webhook show it."""
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "link": notification.link,
        "target": notification.target,
        "project": notification.project.name if notification.project else None,
        "summary": notification.summary,
        "created": notification.created.isoformat() if notification.created else None,
        "read": notification.read_at is not None,
    }


def unread_count(user: Any) -> int:
    """How many of the user's notifications wait unread (the bell's number)."""
    if not signed_in(user):
        return 0
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def may_read(user: User, event: Event) -> bool:
    """Whether user may hear of the event: an active account that may see what it is
    about (hosts: administrators only)."""
    if not signed_in(user):
        return False
    if event.about is None:
        return is_admin(user)
    return allowed(user, event.about, VIEW)


def subscribers(event: Event) -> dict[User, list[Subscription]]:
    """The subscriptions that want this event, by user, for users who may read it."""
    scope = Q(project__isnull=True)
    if event.project is not None:
        scope |= Q(project=event.project)
    found: dict[int, tuple[User, list[Subscription]]] = {}
    for sub in Subscription.objects.filter(scope).select_related("user").order_by("pk"):
        if not sub.wants(event.kind):
            continue
        if sub.user_id not in found:
            found[sub.user_id] = (sub.user, [])
        found[sub.user_id][1].append(sub)
    return {user: subs for user, subs in found.values() if may_read(user, event)}


def emit(event: Event) -> list[Notification]:
    """Tell the event to its subscribers: the notifications written now, their pushes
    and deliveries sent once the transaction commits. A repeat within the throttle
    window is only counted (throttle.held_back). Never fails the caller."""
    try:
        with transaction.atomic():
            if throttle.held_back(event.kind, event.target):
                return []
            made = [_notify(user, subs, event) for user, subs in subscribers(event).items()]
    except Exception:  # noqa: BLE001 - telling must never undo what happened
        log.exception("could not record the %s notifications of %s", event.kind, event.target)
        return []
    if made:
        throttle.summarize_later(event.kind, event.target)
    return made


def _notify(user: User, subs: list[Subscription], event: Event) -> Notification:
    notification = Notification.objects.create(
        user=user,
        kind=event.kind,
        title=event.title[:200],
        body=event.body,
        link=event.link[:300],
        target=event.target[:200],
        project=event.project,
    )
    send(notification, subs)
    return notification


def send(notification: Notification, subs: Iterable[Subscription]) -> None:
    """Push the notification to its user's bell and queue its email and webhook
    deliveries, once the transaction commits."""
    deliveries = []
    for sub in subs:
        if sub.email:
            deliveries.append(
                Delivery(subscription=sub, notification=notification, channel=DeliveryChannel.EMAIL)
            )
        if sub.webhook_url:
            deliveries.append(
                Delivery(
                    subscription=sub, notification=notification, channel=DeliveryChannel.WEBHOOK
                )
            )
    made = [d.pk for d in Delivery.objects.bulk_create(deliveries)]
    if None in made:  # a backend that returns no ids from bulk_create
        made = list(notification.deliveries.values_list("pk", flat=True))
    user_id = notification.user_id
    events.publish(
        events.notify_group(user_id),
        events.NotificationNew(
            type="notification.new",
            notification=serialize(notification),
            unread=unread_count(notification.user),
        ),
    )
    for delivery_id in made:
        transaction.on_commit(functools.partial(queue_delivery, delivery_id))


def queue_delivery(delivery_id: int, countdown: float = 0) -> None:
    """Hand a delivery to a worker (by name: the tasks module imports the jobs, which
    emit); a broker away leaves it pending, and the log says so."""
    try:
        app.send_task(DELIVER_TASK, args=[delivery_id], countdown=countdown or None)
    except Exception as exc:  # noqa: BLE001 - kombu's errors vary with the transport
        log.warning("delivery %s could not be queued: %s", delivery_id, exc)
