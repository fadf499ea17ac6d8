"""Notifications: what users subscribe to hear of, told in the panel, by email and by
webhook.

- `emit` (`core`): the one call the places where a fact becomes known make (a job
  failed, a host went down, a VM crashed...). It writes one notification per user who
  subscribed to that kind and may see what it is about, and after commit pushes it to
  their bell and queues its email and webhook deliveries as Celery tasks, so no request
  waits on a mail server or a receiver.
- `throttle`: the same kind and target again within the window is counted, not sent;
  one summary tells the repeats when the window ends.
- `delivery`, `mail`, `webhooks`: each attempt recorded with its answer, retried with
  backoff; webhooks signed with HMAC-SHA256 and sent only to public addresses (or to
  those an admin allowed, PANEL_WEBHOOK_ALLOW).
- `subscriptions`: the services pages and the API call (subscriptions saved and
  deleted, notifications marked read).
"""

from .core import Event, emit, serialize, unread_count
from .subscriptions import (
    SubscriptionSpec,
    delete_subscription,
    mark_all_read,
    mark_read,
    save_subscription,
    serialize_delivery,
    serialize_subscription,
)

__all__ = [
    "Event",
    "SubscriptionSpec",
    "delete_subscription",
    "emit",
    "mark_all_read",
    "mark_read",
    "save_subscription",
    "serialize",
    "serialize_delivery",
    "serialize_subscription",
    "unread_count",
]
