"""The host watcher: follows every host's domain events and mirrors them at once.

One process runs it (`manage.py watch_hosts`). libvirt delivers events on its
event thread; they are queued and applied here, so the database work never
blocks that thread. Hosts that drop are marked down and retried.
"""

from __future__ import annotations

import logging
import queue
import time

import kombu.exceptions
from django.db import close_old_connections

from vms import services as vm_services

from . import hypervisor, services
from .choices import HostState
from .exceptions import GoneError
from .models import Host

log = logging.getLogger(__name__)


class HostWatcher:
    """Keeps one event subscription per host and applies what arrives."""

    def __init__(self, rescan_seconds: float = 10.0, retry_seconds: float = 2.0) -> None:
        self.rescan_seconds = rescan_seconds
        # A host that is down is tried this often, so it shows up again within
        # moments of its libvirtd's return.
        self.retry_seconds = min(retry_seconds, rescan_seconds)
        self.watches: dict[int, hypervisor.Watch] = {}
        self.events: queue.Queue[tuple[int, hypervisor.DomainEvent | None]] = queue.Queue()
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def rescan(self) -> bool:
        """Subscribe to new hosts, drop removed ones, retry the ones that went away.

        Returns whether every host is watched now."""
        hosts = {h.pk: h for h in Host.objects.all()}
        all_watched = True
        for host_id in list(self.watches):
            watch = self.watches[host_id]
            if host_id not in hosts or not watch.alive():
                watch.stop()
                del self.watches[host_id]
        for host_id, host in hosts.items():
            if host_id in self.watches:
                continue
            try:
                self.watches[host_id] = hypervisor.watch_domains(
                    host.uri,
                    lambda event, hid=host_id: self.events.put((hid, event)),
                    lambda hid=host_id: self.events.put((hid, None)),
                )
            except hypervisor.HypervisorError as exc:
                if host.state != HostState.DOWN:
                    services.set_host_state(host, HostState.DOWN, str(exc))
                all_watched = False
                continue
            if host.state != HostState.UP:
                # Back: a worker catches the inventory up, so this loop keeps
                # applying events meanwhile.
                from .tasks import reconcile_host_task

                services.set_host_state(host, HostState.UP)
                try:
                    reconcile_host_task.delay(host.pk)
                except kombu.exceptions.OperationalError as exc:
                    # The periodic reconcile catches the inventory up later.
                    log.warning("could not queue the reconcile of %s: %s", host.name, exc)
        return all_watched

    def apply(self, host_id: int, event: hypervisor.DomainEvent | None) -> None:
        host = Host.objects.filter(pk=host_id).first()
        if host is None:
            return
        if event is None:
            services.set_host_state(host, HostState.DOWN, "The connection to libvirtd was lost.")
            return
        if event.event == "undefined":
            vm_services.mark_missing(host, event.uuid)
            return
        try:
            info = hypervisor.get_domain(host.uri, event.uuid)
        except hypervisor.NotFound:
            vm_services.mark_missing(host, event.uuid)
            return
        vm_services.sync_domain(host, info)

    def run(self) -> None:
        try:
            self._loop()
        finally:
            for watch in self.watches.values():
                watch.stop()
            self.watches.clear()

    def _loop(self) -> None:
        next_scan = 0.0
        while not self._stop:
            now = time.monotonic()
            if now >= next_scan:
                close_old_connections()
                all_watched = self.rescan()
                next_scan = now + (self.rescan_seconds if all_watched else self.retry_seconds)
            try:
                host_id, event = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.apply(host_id, event)
            except hypervisor.HypervisorError as exc:
                log.warning("could not apply %s on host %s: %s", event, host_id, exc)
            except GoneError as exc:
                log.info("nothing to apply for %s on host %s: %s", event, host_id, exc)
            if event is None:
                # A host dropped: start retrying it soon, not at the next full rescan.
                next_scan = min(next_scan, time.monotonic() + self.retry_seconds)
