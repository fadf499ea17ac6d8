"""Websockets that push VM changes to the browser: a VM's page, the rows of a VM list,
and a host's page (its state and its VMs').

Each closes once its user is logged out, disabled, or may no longer see what it
shows (panel.socket_access).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from panel import events
from panel.consumers import CLOSE_BAD_REQUEST, CLOSE_NOT_FOUND, ScopedConsumer
from panel.models import Host
from panel.permissions import forget, sees_vm, visible_hosts
from panel.services import for_viewer, serialize_host

from .permissions import visible_vms
from .services import serialize_vm

# The most VMs one list socket follows: a list page shows 50 rows.
VM_ROWS_MAX = 100


class VMChangesConsumer(ScopedConsumer):
    """A socket on groups that carry many VMs' changes (a host's, a list's rows): it passes
    on those the user sees, told by the VM's project against the user's (read when the
    socket opened and at each access check), without a query per event and socket."""

    async def vm_update(self, event: events.VMUpdate) -> None:
        seen = sees_vm(self.vm_projects, event["vm"], self.vms_granted)
        if seen is None:
            seen = await database_sync_to_async(self._vm_visible)(event["vm"]["id"])
        if seen:
            await self.send_json(event)

    def _vm_visible(self, vm_id: str) -> bool:
        return visible_vms(forget(self.user)).filter(pk=vm_id).exists()


class HostConsumer(VMChangesConsumer):
    """ws/hosts/<id>/: host state and the state of its VMs as they change."""

    async def load(self, user: Any) -> dict[str, Any] | None:
        self.host_id = int(self.scope["url_route"]["kwargs"]["host_id"])
        self.group = events.host_group(self.host_id)
        return await database_sync_to_async(self._snapshot)(user)

    def _snapshot(self, user: Any) -> dict[str, Any] | None:
        host: Host | None = visible_hosts(user).filter(pk=self.host_id).first()
        if host is None:
            return None
        self.remember_projects(user)
        return {"type": "host.update", "host": for_viewer(user, serialize_host(host))}

    async def host_update(self, event: events.HostUpdate) -> None:
        # The group's event carries the host's whole error; a non-admin gets it trimmed.
        await self.send_json({**event, "host": for_viewer(self.user, dict(event["host"]))})

    async def stats_update(self, event: events.StatsUpdate) -> None:
        # Only the host's own sample is sent to this group (monitoring.collector).
        await self.send_json(event)

    def still_visible(self, user: Any) -> bool:
        self.remember_projects(user)
        return visible_hosts(user).filter(pk=self.host_id).exists()


class VMConsumer(ScopedConsumer):
    """ws/vms/<uuid>/: the VM's state, addresses and details as they change."""

    async def load(self, user: Any) -> dict[str, Any] | None:
        self.vm_id = str(self.scope["url_route"]["kwargs"]["vm_id"])
        self.group = events.vm_group(self.vm_id)
        return await database_sync_to_async(self._snapshot)(user)

    def _snapshot(self, user: Any) -> dict[str, Any] | None:
        vm = visible_vms(user).filter(pk=self.vm_id).first()
        self.remember_projects(user)
        return {"type": "vm.update", "vm": serialize_vm(vm)} if vm else None

    async def vm_update(self, event: events.VMUpdate) -> None:
        # Told by the VM's project, as the host socket does; moved out of the user's
        # projects, the VM is no longer theirs to watch.
        seen = sees_vm(self.vm_projects, event["vm"], self.vms_granted)
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
        self.remember_projects(user)
        return visible_vms(user).filter(pk=self.vm_id).exists()


class VMRowsConsumer(VMChangesConsumer):
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
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        raw = [part for value in query.get("ids", []) for part in value.split(",") if part]
        if not raw or len(raw) > VM_ROWS_MAX:
            return None
        try:
            return {str(uuid.UUID(part)) for part in raw}
        except ValueError:
            return None

    def _visible(self, user: Any, ids: set[str]) -> set[str]:
        self.remember_projects(user)
        return {str(pk) for pk in visible_vms(user).filter(pk__in=ids).values_list("pk", flat=True)}

    def still_visible(self, user: Any) -> bool:
        # Rows moved out of the user's projects are no longer passed on (vm_update tells
        # by the project); the socket closes once none of its rows is the user's.
        return bool(self._visible(user, self.vm_ids))
