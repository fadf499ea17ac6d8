"""Domain lifecycle events of a host, delivered as plain values to a callback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from .connection import check_uri, event_loop, libvirt_errors, open_connection
from .specs import PROBE_PREFIX

log = logging.getLogger(__name__)

EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}

# How a domain stopped (the detail of a "stopped" event).
STOPPED = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: "migrated",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "saved",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: "from_snapshot",
}


@dataclass(frozen=True)
class DomainEvent:
    """One lifecycle change of a domain; detail says how a domain stopped ("" else)."""

    uuid: str
    name: str
    event: str
    detail: str = ""


class Watch:
    """A subscription to one host's domain events; stop() ends it."""

    def __init__(
        self,
        uri: str,
        on_event: Callable[[DomainEvent], None],
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.uri = check_uri(uri)
        self._on_event = on_event
        self._on_lost = on_lost
        event_loop.ensure()
        # A connection of its own: close callbacks and event registrations are
        # per connection, and the watch ends by closing it.
        self._conn = open_connection(self.uri, timeout=10.0)
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.setKeepAlive(5, 3)
        with libvirt_errors():
            self._callback_id = self._conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None
            )
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.registerCloseCallback(self._closed, None)

    def _lifecycle(
        self,
        _conn: libvirt.virConnect,
        dom: libvirt.virDomain,
        event: int,
        detail: int,
        _opaque: object,
    ) -> None:
        if dom.name().startswith(PROBE_PREFIX):
            return
        how = STOPPED.get(detail, "") if event == libvirt.VIR_DOMAIN_EVENT_STOPPED else ""
        try:
            self._on_event(
                DomainEvent(dom.UUIDString(), dom.name(), EVENTS.get(event, "changed"), how)
            )
        except Exception:  # noqa: BLE001 - never break the event loop
            log.exception("domain event handler failed")

    def _closed(self, _conn: libvirt.virConnect, _reason: int, _opaque: object) -> None:
        if self._on_lost is not None:
            self._on_lost()

    def alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except libvirt.libvirtError:
            return False

    def stop(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.domainEventDeregisterAny(self._callback_id)
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()


def watch_domains(
    uri: str, on_event: Callable[[DomainEvent], None], on_lost: Callable[[], None] | None = None
) -> Watch:
    """Call on_event (on the event thread) for every lifecycle change on the host."""
    return Watch(uri, on_event, on_lost)
