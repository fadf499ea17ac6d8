"""The host watcher: follows hosts' domain events and mirrors them at once.

`manage.py watch_hosts` runs it; any number of those processes share the hosts out by
leases (panel/leases.py), each following only the hosts it holds, and taking up hosts
added later or given up by others. libvirt delivers events on its event thread; they
are queued and applied here, so the database work never blocks that thread. Hosts that
drop are marked down and retried. A host that comes back, or that this process takes
over from another holder, has its inventory caught up by a reconcile job, since what
happened on it meanwhile was seen by nobody.
"""

from __future__ import annotations

import functools
import logging
import queue
import time

import kombu.exceptions
from django.db import close_old_connections

from . import hypervisor, registry, services
from .choices import HostState
from .exceptions import GoneError
from .leases import LeaseKeeper
from .models import Host
from .tasks import reconcile_host_task

log = logging.getLogger(__name__)


class HostWatcher:
    """Keeps one event subscription per host it holds and applies what arrives.

    With a LeaseKeeper it follows the hosts whose watcher lease it holds; without one,
    every host (a single watcher, as tests run it in a thread)."""

    def __init__(
        self,
        rescan_seconds: float = 10.0,
        retry_seconds: float = 2.0,
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.keeper = keeper
        self.rescan_seconds = rescan_seconds
        # A host that is down is tried this often, so it shows up again within
        # moments of its libvirtd's return.
        self.retry_seconds = min(retry_seconds, rescan_seconds)
        self.watches: dict[int, hypervisor.Watch] = {}
        self.events: queue.Queue[tuple[int, hypervisor.DomainEvent | None]] = queue.Queue()
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def mine(self) -> frozenset[int] | None:
        """The hosts this watcher may follow now (None: every host)."""
        return None if self.keeper is None else self.keeper.owned()

    def rescan(self) -> bool:
        """Subscribe to new hosts, drop removed (or no longer held) ones, retry the ones
        that went away, and catch up the hosts taken over from another holder.

        Returns whether every host is watched now."""
        # Taken over first: a host the keeper takes in between is caught up next time.
        taken_over = set() if self.keeper is None else self.keeper.take_overs()
        mine = self.mine()
        found = Host.objects.all() if mine is None else Host.objects.filter(pk__in=mine)
        hosts = {h.pk: h for h in found}
        all_watched = True
        before = set(self.watches)
        for host_id in list(self.watches):
            watch = self.watches[host_id]
            if host_id not in hosts or not watch.alive():
                watch.stop()
                del self.watches[host_id]
        for host_id, host in hosts.items():
            catch_up = host_id in taken_over
            if host_id in self.watches:
                if catch_up:
                    self._catch_up(host)
                continue
            try:
                self.watches[host_id] = hypervisor.watch_domains(
                    host.uri,
                    functools.partial(self._heard, host_id),
                    functools.partial(self._heard, host_id, None),
                )
            except hypervisor.HypervisorError as exc:
                if host.state != HostState.DOWN:
                    services.set_host_state(host, HostState.DOWN, str(exc))
                all_watched = False
                continue
            back = host.state != HostState.UP
            if back:
                services.set_host_state(host, HostState.UP)
            if back or catch_up:
                self._catch_up(host)
        if set(self.watches) != before:
            log.info(
                "watching %d hosts: %d more, %d fewer",
                len(self.watches),
                len(self.watches.keys() - before),
                len(before - self.watches.keys()),
            )
        return all_watched

    def _heard(self, host_id: int, event: hypervisor.DomainEvent | None) -> None:
        """On the event thread: a host's event (None: the host's connection was lost)."""
        self.events.put((host_id, event))

    def _catch_up(self, host: Host) -> None:
        """Queue the reconcile of a host back up or taken over: a worker catches its
        inventory up, so this loop keeps applying events meanwhile."""
        try:
            reconcile_host_task.delay(host.pk)
        except kombu.exceptions.OperationalError as exc:
            # The periodic reconcile catches the inventory up later.
            log.warning("could not queue the reconcile of %s: %s", host.name, exc)

    def apply(self, host_id: int, event: hypervisor.DomainEvent | None) -> None:
        mine = self.mine()
        if mine is not None and host_id not in mine:
            return  # no longer this watcher's: its new holder catches the host up
        host = Host.objects.filter(pk=host_id).first()
        if host is None:
            return
        if event is None:
            services.set_host_state(host, HostState.DOWN, "The connection to libvirtd was lost.")
            return
        for handler in registry.domain_events:
            if event.event in ("stopped", "crashed") and handler.stopped is not None:
                # Told before the row changes (a crash, a stop made outside the panel).
                handler.stopped(host, event.uuid, event.detail or event.event)
            if event.event == "undefined":
                handler.gone(host, event.uuid)
                continue
            try:
                info = hypervisor.get_domain(host.uri, event.uuid)
            except hypervisor.NotFound:
                handler.gone(host, event.uuid)
                continue
            handler.changed(host, info)

    def run(self) -> None:
        if self.keeper is not None:
            self.keeper.start()
        try:
            self._loop()
        finally:
            for watch in self.watches.values():
                watch.stop()
            self.watches.clear()
            if self.keeper is not None:
                # After the watches end: the leases go to the others once nothing here
                # follows those hosts any more.
                self.keeper.stop()

    def _loop(self) -> None:
        next_scan = 0.0
        scanned_for = self.mine()
        while not self._stop:
            now = time.monotonic()
            mine = self.mine()
            # Rescan on time, and as soon as the hosts this watcher holds change.
            taken = self.keeper is not None and self.keeper.has_take_overs()
            if now >= next_scan or mine != scanned_for or taken:
                scanned_for = mine
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
