"""The websockets' common ground (ScopedConsumer), and the socket of a job's progress.

The apps' sockets (a VM's page, the VM list's rows, a host's page, the consoles) build on
ScopedConsumer.

Each closes once its user is logged out, disabled, or may no longer see what it
shows (panel.socket_access).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events, jobs
from .notifications import unread_count
from .permissions import forget, visible_jobs, vm_projects_seen, vms_granted
from .socket_access import AccessWatch

# Close codes: 4400 a request the socket cannot take, 4401 not logged in, 4404 not found
# or out of scope.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class ScopedConsumer(AccessWatch, AsyncJsonWebsocketConsumer):
    """Refuses anonymous users; subclasses load their object within the user's scope,
    and say whether the user may still see it (still_visible)."""

    group: str = ""
    groups: tuple[str, ...] = ()  # instead of group, for a socket on many groups
    refusal = CLOSE_NOT_FOUND  # the close code when load() finds nothing

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        snapshot = await self.load(user)
        if snapshot is None:
            await self._refuse(self.refusal)
            return
        for group in self._groups():
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json(snapshot)
        await self.watch_access(user.pk)

    def still_allowed(self, user: Any) -> tuple[int, str] | None:
        self.user = user  # the fresh copy: events are filtered by the current roles
        if self.still_visible(user):
            return None
        return CLOSE_NOT_FOUND, "You may no longer see this: your access to it changed."

    def still_visible(self, user: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def remember_projects(self, user: Any) -> None:
        """The projects whose VMs the user sees now (and the VMs granted them alone), for
        filtering VM changes."""
        self.vm_projects = vm_projects_seen(user)
        self.vms_granted = vms_granted(user)

    async def _refuse(self, code: int) -> None:
        # Accept first: a close before accept is an HTTP 403 on the handshake,
        # and the browser would never see why (nor stop retrying).
        await self.accept()
        await self.close(code=code)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # These sockets only push updates; whatever a client sends (JSON or not) gets an answer
        # instead of a decoding error in the server.
        await self.send_json(
            {"error": "This connection only sends updates and takes no messages; do not send."}
        )

    async def disconnect(self, code: int) -> None:
        await self.stop_watching()
        for group in self._groups():
            await self.channel_layer.group_discard(group, self.channel_name)

    def _groups(self) -> tuple[str, ...]:
        return (self.group,) if self.group else self.groups

    async def load(self, user: Any) -> dict[str, Any] | None:  # pragma: no cover - abstract
        raise NotImplementedError


class JobConsumer(ScopedConsumer):
    """ws/jobs/<id>/: the job's state now, then every change."""

    async def load(self, user: Any) -> dict[str, Any] | None:
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        self.job_id = job_id
        self.group = events.job_group(job_id)
        return await database_sync_to_async(self._snapshot)(user)

    def _snapshot(self, user: Any) -> dict[str, Any] | None:
        job = visible_jobs(user).filter(pk=self.job_id).first()
        return {"type": "job.update", "job": jobs.serialize(job)} if job else None

    async def job_update(self, event: events.JobUpdate) -> None:
        if await database_sync_to_async(self._still_visible)():
            await self.send_json(event)

    def _still_visible(self) -> bool:
        return self.still_visible(forget(self.user))

    def still_visible(self, user: Any) -> bool:
        return visible_jobs(user).filter(pk=self.job_id).exists()


class NotificationConsumer(ScopedConsumer):
    """ws/notifications/: the user's unread count now, then each new notification (and
    the count again when some are read). The group is the user's own."""

    async def load(self, user: Any) -> dict[str, Any] | None:
        self.group = events.notify_group(user.pk)
        unread = await database_sync_to_async(unread_count)(user)
        return {"type": "notification.new", "notification": {}, "unread": unread}

    def still_visible(self, user: Any) -> bool:
        return True  # their own bell, while they are signed in (AccessWatch checks that)

    async def notification_new(self, event: events.NotificationNew) -> None:
        await self.send_json(event)
