"""Subscriptions saved and deleted, notifications marked read: what pages and the API
call. Subscriptions, notifications and deliveries are their owner's alone."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from panel import audit, events
from panel.actors import Actor
from panel.choices import NotificationKind
from panel.exceptions import ServiceError
from panel.models import Delivery, Notification, Project, Subscription
from panel.permissions import VIEW, is_admin, restrict, signed_in

from . import webhooks

# Hosts are administrators' objects: only they may hear of them.
ADMIN_KINDS: frozenset[str] = frozenset({NotificationKind.HOST_DOWN, NotificationKind.HOST_UP})


@dataclass(frozen=True)
class SubscriptionSpec:
    """What a subscription asks for, as a form or the API gives it."""

    kinds: list[str] = field(default_factory=list)
    project: int | None = None
    email: bool = False
    webhook_url: str = ""
    new_secret: bool = False


def serialize_subscription(sub: Subscription) -> dict[str, Any]:
    """A subscription as its owner sees it (the secret included: only they see it)."""
    return {
        "id": sub.pk,
        "kinds": list(sub.kinds),
        "project": sub.project_id,
        "email": sub.email,
        "webhook_url": sub.webhook_url,
        "webhook_secret": sub.webhook_secret,
        "created": sub.created.isoformat() if sub.created else None,
    }


def serialize_delivery(delivery: Delivery) -> dict[str, Any]:
    """A delivery and the answer of each attempt."""
    return {
        "id": delivery.pk,
        "subscription": delivery.subscription_id,
        "notification": delivery.notification_id,
        "title": delivery.notification.title,
        "channel": delivery.channel,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_try": delivery.next_try.isoformat() if delivery.next_try else None,
        "log": delivery.log,
        "created": delivery.created.isoformat() if delivery.created else None,
    }


def _checked(spec: SubscriptionSpec, actor: Actor) -> tuple[list[str], Project | None, str]:
    user = actor.person
    kinds = list(dict.fromkeys(spec.kinds))
    known = set(NotificationKind.values)
    if not kinds or any(k not in known for k in kinds):
        raise ServiceError(
            f"Choose what to hear of among: {', '.join(sorted(known))}.", field="kinds"
        )
    if not is_admin(user) and ADMIN_KINDS & set(kinds):
        raise ServiceError(
            "Only administrators can hear of hosts going down or coming back: leave "
            "host.down and host.up out.",
            field="kinds",
        )
    project = None
    if spec.project is not None:
        project = restrict(Project.objects.all(), user, VIEW).filter(pk=spec.project).first()
        if project is None:
            raise ServiceError(
                f"No project with id {spec.project} that you are in: choose one of yours, "
                "or none for all of them.",
                field="project",
            )
    if spec.email and not getattr(user, "email", ""):
        raise ServiceError(
            "Your account has no email address: add one on the Account page first.",
            field="email",
        )
    url = spec.webhook_url.strip()
    if url:
        webhooks.target(url)
    return kinds, project, url


def save_subscription(
    sub: Subscription | None, spec: SubscriptionSpec, *, actor: Actor
) -> Subscription:
    """Create (sub None) or change one of the actor's subscriptions, audited."""
    if not signed_in(actor.person):
        raise ServiceError("Sign in to subscribe.")
    action = "subscription.create" if sub is None else "subscription.update"
    with audit.refusals_recorded(actor, action, sub or "subscription"):
        kinds, project, url = _checked(spec, actor)
        with transaction.atomic():
            sub = sub or Subscription(user=actor.person)
            sub.kinds, sub.project, sub.email, sub.webhook_url = kinds, project, spec.email, url
            if url and (spec.new_secret or not sub.webhook_secret):
                sub.webhook_secret = secrets.token_urlsafe(32)
            if not url:
                sub.webhook_secret = ""
            sub.save()
            audit.record(
                actor,
                action,
                sub,
                project=project,
                detail=f"kinds {', '.join(kinds)}; email {'on' if spec.email else 'off'}; "
                f"webhook {url or 'none'}",
            )
    return sub


def delete_subscription(sub: Subscription, *, actor: Actor) -> None:
    """Remove one of the actor's subscriptions (its deliveries go with it), audited."""
    with transaction.atomic():
        audit.record(actor, "subscription.delete", sub, project=sub.project)
        sub.delete()


def mark_read(notification: Notification) -> Notification:
    """One notification read (the user's own view of their bell: not audited)."""
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    _tell_count(notification.user_id)
    return notification


def mark_all_read(user: Any) -> int:
    """Every unread notification of the user read; how many were."""
    count = Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )
    _tell_count(user.pk)
    return count


def _tell_count(user_id: int) -> None:
    """The user's other pages update their bell's number."""
    unread = Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()
    events.publish(
        events.notify_group(user_id),
        events.NotificationNew(type="notification.new", notification={}, unread=unread),
    )
