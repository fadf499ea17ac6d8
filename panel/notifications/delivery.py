"""Sending a delivery by email or webhook: each attempt recorded with its answer, a
failure tried again after a growing pause, up to PANEL_NOTIFY_ATTEMPTS attempts."""

from __future__ import annotations

import json
import logging
import smtplib
from datetime import timedelta
from typing import Any

import urllib3
from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F, Q
from django.utils import timezone

from panel.choices import DeliveryChannel, DeliveryState
from panel.exceptions import ServiceError
from panel.models import Delivery

from . import webhooks
from .core import queue_delivery, serialize

log = logging.getLogger(__name__)

FINAL = (DeliveryState.SENT, DeliveryState.FAILED)
# A next try this close is due (a worker's clock and the database's may differ a little).
EARLY = timedelta(seconds=1)


def absolute(link: str) -> str:
    """A page's link as a reader outside the panel follows it (PANEL_PUBLIC_URL)."""
    base = settings.PANEL_PUBLIC_URL.rstrip("/")
    return f"{base}{link}" if link.startswith("/") and base else link


def payload(delivery: Delivery) -> bytes:
    """The JSON a webhook receives."""
    body = serialize(delivery.notification)
    body["link"] = absolute(body["link"])
    body["delivery"] = delivery.pk
    return json.dumps(body, sort_keys=True).encode()


def _email(delivery: Delivery) -> dict[str, Any]:
    user = delivery.subscription.user
    if not user.email:
        raise ServiceError(
            f"The account {user.username} has no email address: add one on the Account page."
        )
    note = delivery.notification
    text = "\n\n".join(p for p in (note.body or note.title, absolute(note.link)) if p)
    sent = EmailMessage(
        subject=f"[KVM panel] {note.title}",
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    ).send()
    return {"status": 250 if sent else None, "answer": f"accepted for {user.email}"}


def _webhook(delivery: Delivery) -> dict[str, Any]:
    sub = delivery.subscription
    status, answer = webhooks.post(
        sub.webhook_url,
        sub.webhook_secret,
        payload(delivery),
        {"X-Panel-Event": delivery.notification.kind, "X-Panel-Delivery": str(delivery.pk)},
    )
    attempt: dict[str, Any] = {"status": status, "answer": answer}
    if not 200 <= status < 300:
        attempt["error"] = f"the receiver answered {status}"
    return attempt


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after this many: doubling from the base."""
    return float(settings.PANEL_NOTIFY_RETRY_SECONDS * 2 ** (attempts - 1))


def attempt(delivery_id: int) -> float | None:
    """One attempt at a delivery, recorded; the seconds until the next one when it failed
    and may be tried again, else None."""
    delivery = (
        Delivery.objects.select_related("subscription__user", "notification__project")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.state in FINAL:
        return None
    if delivery.next_try is not None and delivery.next_try > timezone.now() + EARLY:
        return None  # not due: the message sent for its next try comes then
    # Claimed for this attempt: a second message for the same delivery (sent again by
    # resend_lost) finds the count moved on and sends nothing.
    if not Delivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, state=delivery.state
    ).update(attempts=F("attempts") + 1):
        return None
    delivery.attempts += 1
    send = _email if delivery.channel == DeliveryChannel.EMAIL else _webhook
    try:
        if not delivery.subscription.user.is_active:
            raise ServiceError("The account is disabled: nothing is sent to it.")
        outcome = send(delivery)
    except ServiceError as exc:
        outcome = {"error": exc.message, "final": True}
    except (smtplib.SMTPException, urllib3.exceptions.HTTPError, OSError) as exc:
        outcome = {"error": f"{exc.__class__.__name__}: {exc}"}
    return _record(delivery, outcome)


def _record(delivery: Delivery, outcome: dict[str, Any]) -> float | None:
    final = outcome.pop("final", False)
    now = timezone.now()
    delivery.log = [
        *delivery.log,
        {"at": now.isoformat(), "status": None, "answer": "", "error": "", **outcome},
    ]
    wait = None
    if not outcome.get("error"):
        delivery.state, delivery.next_try = DeliveryState.SENT, None
    elif final or delivery.attempts >= settings.PANEL_NOTIFY_ATTEMPTS:
        delivery.state, delivery.next_try = DeliveryState.FAILED, None
        log.warning("delivery %s failed for good: %s", delivery.pk, outcome["error"])
    else:
        wait = backoff(delivery.attempts)
        delivery.state, delivery.next_try = DeliveryState.RETRYING, now + timedelta(seconds=wait)
        log.info("delivery %s: %s; trying again in %.0f s", delivery.pk, outcome["error"], wait)
    delivery.save(update_fields=["log", "state", "next_try"])
    return wait


def resend_lost(older_than: float) -> list[int]:
    """Deliveries whose task never came (its message lost, a broker away when it was
    sent): pending for older_than seconds, or past their next try by as much; each is
    queued again, and their ids returned. A message that was only late finds the
    delivery claimed or done and sends nothing twice."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    lost = Delivery.objects.filter(
        Q(state=DeliveryState.PENDING, created__lt=cutoff)
        | Q(state=DeliveryState.RETRYING, next_try__lt=cutoff)
    ).values_list("pk", flat=True)
    ids = list(lost[:500])
    for delivery_id in ids:
        queue_delivery(delivery_id)
    if ids:
        log.warning("sent the deliveries %s again: no worker had taken them", ids)
    return ids
