"""Websockets that push job progress and host changes to the browser.

Each closes once its user is logged out, disabled, or may no longer see what it
shows (panel.socket_access).
"""

from __future__ import annotations

import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events, jobs
from .models import Host
from .permissions import forget, sees_vm, visible_hosts, visible_jobs, vm_projects_seen
from .socket_access import AccessWatch

# Close codes: 4400 a request the socket cannot take, 4401 not logged in, 4404 not found
# or out of scope.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404

# The most VMs one list socket follows: a list page shows 50 rows.
VM_ROWS_MAX = 100


class _ScopedConsumer(AccessWatch, AsyncJsonWebsocketConsumer):
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

    def _remember_projects(self, user: Any) -> None:
        """The projects whose VMs the user sees now, for filtering VM changes."""
        self.vm_projects = vm_projects_seen(user)

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


class _VMChangesConsumer(_ScopedConsumer):
    """A socket on groups that carry many VMs' changes (a host's, a list's rows): it passes
    on those the user sees, told by the VM's project against the user's (read when the
    socket opened and at each access check), without a query per event and socket."""

    async def vm_update(self, event: events.VMUpdate) -> None:
        seen = sees_vm(self.vm_projects, event["vm"])
        if seen is None:
            seen = await database_sync_to_async(self._vm_visible)(event["vm"]["id"])
        if seen:
            await self.send_json(event)

    def _vm_visible(self, vm_id: str) -> bool:
        from vms.permissions import visible_vms

        return visible_vms(forget(self.user)).filter(pk=vm_id).exists()


class JobConsumer(_ScopedConsumer):
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


class HostConsumer(_VMChangesConsumer):
    """ws/hosts/<id>/: host state and the state of its VMs as they change."""

    async def load(self, user: Any) -> dict[str, Any] | None:
        self.host_id = int(self.scope["url_route"]["kwargs"]["host_id"])
        self.group = events.host_group(self.host_id)
        return await database_sync_to_async(self._snapshot)(user)

    def _snapshot(self, user: Any) -> dict[str, Any] | None:
        from .services import for_viewer, serialize_host

        host: Host | None = visible_hosts(user).filter(pk=self.host_id).first()
        if host is None:
            return None
        self._remember_projects(user)
        return {"type": "host.update", "host": for_viewer(user, serialize_host(host))}

    async def host_update(self, event: events.HostUpdate) -> None:
        from .services import for_viewer

        # The group's event carries the host's whole error; a non-admin gets it trimmed.
        await self.send_json({**event, "host": for_viewer(self.user, dict(event["host"]))})

    async def stats_update(self, event: events.StatsUpdate) -> None:
        # Only the host's own sample is sent to this group (monitoring.collector).
        await self.send_json(event)

    def still_visible(self, user: Any) -> bool:
        self._remember_projects(user)
        return visible_hosts(user).filter(pk=self.host_id).exists()


class VMConsumer(_ScopedConsumer):
    """ws/vms/<uuid>/: the VM's state, addresses and details as they change."""

    async def load(self, user: Any) -> dict[str, Any] | None:
        self.vm_id = str(self.scope["url_route"]["kwargs"]["vm_id"])
        self.group = events.vm_group(self.vm_id)
        return await database_sync_to_async(self._snapshot)(user)

    def _snapshot(self, user: Any) -> dict[str, Any] | None:
        from vms.permissions import visible_vms
        from vms.services import serialize_vm

        vm = visible_vms(user).filter(pk=self.vm_id).first()
        self._remember_projects(user)
        return {"type": "vm.update", "vm": serialize_vm(vm)} if vm else None

    async def vm_update(self, event: events.VMUpdate) -> None:
        # Told by the VM's project, as the host socket does; moved out of the user's
        # projects, the VM is no longer theirs to watch.
        seen = sees_vm(self.vm_projects, event["vm"])
        if seen is None:
            seen = await database_sync_to_async(self._still_visible)()
        if seen:
            await self.send_json(event)
        else:
            await self.close(code=CLOSE_NOT_FOUND)

    async def stats_update(self, event: events.StatsUpdate) -> None:
        if await database_sync_to_async(self._still_visible)():
            await self.send_json(event)

    def _still_visible(self) -> bool:
        return self.still_visible(forget(self.user))

    def still_visible(self, user: Any) -> bool:
        from vms.permissions import visible_vms

        self._remember_projects(user)
        return visible_vms(user).filter(pk=self.vm_id).exists()


class VMRowsConsumer(_VMChangesConsumer):
    """ws/vm-rows/?ids=<uuid>,<uuid>,...: the state of the VMs a list shows, as it changes.

    A VM list follows its own rows rather than every VM of their hosts: a change reaches
    the pages that show that VM, not every page with a VM on the same host. The socket
    hears what the VM's row shows (state, host, addresses), not its usage samples nor
    the details its own page reads."""

    async def load(self, user: Any) -> dict[str, Any] | None:
        asked = self._asked()
        if asked is None:
            self.refusal = CLOSE_BAD_REQUEST
            return None
        self.vm_ids = await database_sync_to_async(self._visible)(user, asked)
        if not self.vm_ids:
            return None
        self.groups = tuple(events.vm_row_group(pk) for pk in sorted(self.vm_ids))
        return {"type": "vms.watch", "vms": sorted(self.vm_ids)}

    def _asked(self) -> set[str] | None:
        """The ids in the query string; None when one is not a VM id or there are too many."""
        from urllib.parse import parse_qs

        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        raw = [part for value in query.get("ids", []) for part in value.split(",") if part]
        if not raw or len(raw) > VM_ROWS_MAX:
            return None
        try:
            return {str(uuid.UUID(part)) for part in raw}
        except ValueError:
            return None

    def _visible(self, user: Any, ids: set[str]) -> set[str]:
        from vms.permissions import visible_vms

        self._remember_projects(user)
        return {str(pk) for pk in visible_vms(user).filter(pk__in=ids).values_list("pk", flat=True)}

    def still_visible(self, user: Any) -> bool:
        # Rows moved out of the user's projects are no longer passed on (vm_update tells
        # by the project); the socket closes once none of its rows is the user's.
        return bool(self._visible(user, self.vm_ids))
