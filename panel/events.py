"""The one place that sends to Channels groups: typed payloads, sent on commit."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any, TypedDict

import redis.exceptions
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


class JobUpdate(TypedDict):
    type: str  # "job.update"
    job: dict[str, Any]


class HostUpdate(TypedDict):
    type: str  # "host.update"
    host: dict[str, Any]


class VMUpdate(TypedDict):
    type: str  # "vm.update"
    vm: dict[str, Any]


class StatsUpdate(TypedDict):
    type: str  # "stats.update"
    kind: str  # "vm" or "host"
    id: str
    sample: dict[str, Any]


class AccessChanged(TypedDict):
    type: str  # "access.changed"
    # A hash of the session that ended (logout), or "": open websockets of that session
    # close at once, the others check their user's access again.
    ended_session: str


class NotificationNew(TypedDict):
    type: str  # "notification.new"
    notification: dict[str, Any]  # empty when only the unread count changed
    unread: int


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def host_group(host_id: int) -> str:
    return f"host-{host_id}"


def vm_group(uuid: str) -> str:
    return f"vm-{uuid}"


def vm_row_group(uuid: str) -> str:
    """The lists that show a VM: its state, host and addresses, not its samples or details."""
    return f"vm-row-{uuid}"


def user_group(user_id: int) -> str:
    """Every open websocket of one user, told when their access may have changed."""
    return f"user-{user_id}"


def notify_group(user_id: int) -> str:
    """The bells of one user's open pages."""
    return f"notify-{user_id}"


def console_group(uuid: str) -> str:
    """The viewers of a VM's serial console, who get a copy of its output."""
    return f"console-{uuid}"


def _send_all(messages: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None or not messages:
        return

    async def send_all() -> None:
        # One event loop (and Redis connection) for the whole batch.
        for group, payload in messages:
            await layer.group_send(group, payload)

    def send() -> None:
        try:
            async_to_sync(send_all)()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # Redis down: open pages miss this push and catch up when they reconnect.
            log.warning(
                "could not publish %d message(s), first to %s: Redis cannot be reached (%s)",
                len(messages),
                messages[0][0],
                exc,
            )
        except Exception:  # noqa: BLE001 - a lost push must never fail the action itself
            log.exception(
                "could not publish %d message(s), first to %s", len(messages), messages[0][0]
            )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        send()
        return
    # Called from sync code on a thread that runs an event loop (async_to_sync
    # refuses to block one): send from a helper thread instead.
    thread = threading.Thread(target=send, name="panel-publish")
    thread.start()
    thread.join(10)


Event = JobUpdate | HostUpdate | VMUpdate | StatsUpdate | AccessChanged | NotificationNew


def publish(group: str, payload: Event) -> None:
    """Send payload to group once the current transaction commits (at once outside one)."""
    publish_many([(group, payload)])


def publish_many(messages: Sequence[tuple[str, Event]]) -> None:
    """Send many payloads in one go once the current transaction commits."""
    batch = [(group, dict(payload)) for group, payload in messages]

    def send() -> None:
        _send_all(batch)

    transaction.on_commit(send)


def access_changed(user_id: int, *, ended_session: str = "") -> None:
    """Tell the user's open websockets to check their access again (role, membership,
    account, password changed) or, for a logout, that their session ended."""
    publish(user_group(user_id), AccessChanged(type="access.changed", ended_session=ended_session))
