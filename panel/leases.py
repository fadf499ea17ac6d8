"""Hosts shared out among watcher and collector processes, by leases in the database.

Any number of host watchers (`manage.py watch_hosts`, role "watcher") and stats
collectors (`manage.py collect_stats`, role "collector") may run, on one machine or on
several that share the database. Each host has one HostLease row per role, and a
process works only on the hosts whose lease it holds. A LeaseKeeper thread in every
process runs one round of this protocol every HEARTBEAT_SECONDS (3):

1. Heartbeat. The process stamps its ProcessHeartbeat row (role, name, last_seen). A
   process not seen for LEASE_SECONDS (10) is dead. Names are "<hostname>:<pid>:<random>",
   so a process started again is a new one.
2. Renew. One UPDATE moves expires_at to now + LEASE_SECONDS on the leases the process
   owns that have not expired. A lease it let expire and another process took has
   another owner now: it is no longer this process's.
3. Share. H hosts among the n live processes of the role, in order of name: the first
   H mod n may hold ceil(H / n) hosts, the others floor(H / n). The shares add up to H,
   so every host has a taker, and no two shares differ by more than one.
4. Release or take. Over its share, a process releases the excess (expires_at = FREE),
   and another takes those at its next heartbeat: a newly started process gets its share
   within a few heartbeats. Under it, it takes leases that are free or expired:

       UPDATE lease SET owner = me, expires_at = now + LEASE_SECONDS
       WHERE role = ... AND host_id IN (...) AND expires_at < now

   then reads back which of them it got. The UPDATE checks the condition row by row, on
   the row as it is when written: SQLite has one writer at a time, and PostgreSQL
   re-reads a row another transaction changed meanwhile before it applies the WHERE. Of
   two processes taking the same lease exactly one gets it, and a renewal
   (expires_at >= now) and a take (expires_at < now) never both match one row.

`now` is the database's clock (PostgreSQL's clock_timestamp(); an SQLite file is on this
machine), so processes on machines whose clocks differ agree on when a lease ends.

A process uses a host only until its own deadline for the lease: the monotonic time at
which the round began (before the database read `now`), plus LEASE_SECONDS, minus a
margin. That deadline passes before any other process may take the lease, even when the
process's rounds stop succeeding (database unreachable, process paused): it stops
watching or collecting a host before another may start. A lease it gets back after its
deadline passed counts as newly taken.

A lease taken from a previous holder (one that died or released it, or this process
after its deadline passed) is reported by take_overs(), so the watcher catches that
host's inventory up: events may have been missed in between. A process that stops
cleanly releases its leases and removes its heartbeat, so the others take its hosts at
their next round; a killed one's hosts are taken within LEASE_SECONDS +
HEARTBEAT_SECONDS (13 s).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from django.db import Error, IntegrityError, connection
from django.utils import timezone

from .choices import ProcessRole
from .models import Host, HostLease, ProcessHeartbeat

log = logging.getLogger(__name__)

LEASE_SECONDS = 10.0
HEARTBEAT_SECONDS = 3.0
# What a lease that nobody holds expires at.
FREE = datetime(2000, 1, 1, tzinfo=UTC)
# Heartbeat rows of processes gone this long are removed.
FORGET_AFTER = timedelta(hours=1)


def process_name() -> str:
    """A name no other process, here or on another machine, has or will have."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def database_now() -> datetime:
    """The database's clock: the one every process compares lease ends with."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()


class LeaseKeeper:
    """One process's leases of one role, kept by a thread that runs a round per heartbeat."""

    def __init__(
        self,
        role: ProcessRole | str,
        *,
        name: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.role = ProcessRole(role)
        self.name = name or process_name()
        self.lease = timedelta(seconds=lease_seconds)
        self.heartbeat_seconds = heartbeat_seconds
        # Stop using a host this long before its lease ends, by this process's own clock.
        self.margin = lease_seconds / 5
        # Whether this is the first live process of its role by name, as of the last round
        # (the collector that writes the whole fleet's series).
        self.first = False
        self._deadlines: dict[int, float] = {}
        self._taken_over: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what the process asks -------------------------------------------------------

    def owned(self) -> frozenset[int]:
        """The ids of the hosts this process may work on now."""
        now = time.monotonic()
        with self._lock:
            return frozenset(h for h, deadline in self._deadlines.items() if deadline > now)

    def has_take_overs(self) -> bool:
        """Whether take_overs() has hosts to report."""
        with self._lock:
            return bool(self._taken_over)

    def take_overs(self) -> set[int]:
        """Hosts taken from a previous holder since the last call: whatever happened on
        them in between was seen by nobody."""
        with self._lock:
            taken, self._taken_over = self._taken_over, set()
        return taken

    # --- the thread ------------------------------------------------------------------

    def start(self) -> None:
        """Run a round now and then every heartbeat, in a thread, until stop()."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"leases-{self.role}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread, which releases every lease and the heartbeat as it goes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while True:
                try:
                    self.heartbeat()
                except Error as exc:
                    self.first = False
                    log.warning("%s %s could not renew its leases: %s", self.role, self.name, exc)
                    # A broken connection is opened afresh next round.
                    connection.close()
                except Exception:  # noqa: BLE001 - the next round may well succeed
                    self.first = False
                    log.exception("%s %s: lease round failed", self.role, self.name)
                if self._stop.wait(self.heartbeat_seconds):
                    break
        finally:
            try:
                self.release()
            except Error as exc:
                log.warning("%s %s could not release its leases: %s", self.role, self.name, exc)
            connection.close()

    # --- one round -------------------------------------------------------------------

    def heartbeat(self) -> None:
        """One round of the protocol (the module docstring): stamp, renew, share out."""
        started = time.monotonic()
        now = database_now()
        until = now + self.lease
        leases = HostLease.objects.filter(role=self.role)
        if not ProcessHeartbeat.objects.filter(name=self.name).update(last_seen=now):
            ProcessHeartbeat.objects.create(name=self.name, role=self.role, last_seen=now)
        self._add_new_hosts()

        leases.filter(owner=self.name, expires_at__gte=now).update(expires_at=until)
        renewed = set(
            leases.filter(owner=self.name, expires_at=until).values_list("host_id", flat=True)
        )
        held = set(renewed)

        total = leases.count()
        live, rank, share = self._share(now, total)

        taken: set[int] = set()
        had_holder: set[int] = set()
        released: list[int] = []
        if len(held) > share:
            released = sorted(held)[share:]
            leases.filter(owner=self.name, host_id__in=released).update(expires_at=FREE)
            held.difference_update(released)
        elif len(held) < share:
            taken, had_holder = self._take(share - len(held), now, until)
            held |= taken
        if rank == 0:
            ProcessHeartbeat.objects.filter(last_seen__lt=now - FORGET_AFTER).delete()
        self.first = rank == 0

        deadline = started + self.lease.total_seconds() - self.margin
        with self._lock:
            # Renewed after this process had stopped using it (its round came late): as
            # good as newly taken.
            late = time.monotonic()
            lapsed = {h for h in renewed & held if self._deadlines.get(h, 0.0) <= late}
            dropped = self._deadlines.keys() - held - set(released)
            self._deadlines = dict.fromkeys(held, deadline)
            self._taken_over |= had_holder | lapsed
        if taken or released or dropped:
            log.info(
                "%s %s holds %d of %d hosts (%d live): took %d (%d from a previous holder), "
                "released %d, lost %d",
                self.role,
                self.name,
                len(held),
                total,
                live,
                len(taken),
                len(had_holder),
                len(released),
                len(dropped),
            )

    def _share(self, now: datetime, total: int) -> tuple[int, int, int]:
        """(how many processes of this role are live, this one's rank among them by name,
        how many of the total hosts are its share)."""
        live = list(
            ProcessHeartbeat.objects.filter(role=self.role, last_seen__gte=now - self.lease)
            .order_by("name")
            .values_list("name", flat=True)
        )
        rank = live.index(self.name)
        return len(live), rank, total // len(live) + (1 if rank < total % len(live) else 0)

    def _add_new_hosts(self) -> None:
        """A lease row for each host that has none for this role yet (a host just added)."""
        missing = list(Host.objects.exclude(leases__role=self.role).values_list("pk", flat=True))
        if not missing:
            return
        try:
            HostLease.objects.bulk_create(
                [HostLease(host_id=pk, role=self.role, expires_at=FREE) for pk in missing],
                ignore_conflicts=True,
            )
        except IntegrityError:
            pass  # a host removed meanwhile: the next round sees the hosts as they are

    def _take(self, wanted: int, now: datetime, until: datetime) -> tuple[set[int], set[int]]:
        """Take up to `wanted` free or expired leases; (taken, those a process held before)."""
        leases = HostLease.objects.filter(role=self.role)
        candidates = list(leases.filter(expires_at__lt=now).values_list("host_id", "owner"))
        # Processes taking at the same moment mostly try different rows.
        random.shuffle(candidates)
        taken: set[int] = set()
        had_holder: set[int] = set()
        while candidates and len(taken) < wanted:
            batch = dict(candidates[: wanted - len(taken)])
            del candidates[: len(batch)]
            leases.filter(host_id__in=batch, expires_at__lt=now).update(
                owner=self.name, expires_at=until
            )
            got = set(
                leases.filter(host_id__in=batch, owner=self.name, expires_at=until).values_list(
                    "host_id", flat=True
                )
            )
            taken |= got
            had_holder |= {h for h in got if batch[h]}
        return taken, had_holder

    def release(self) -> None:
        """Stop using every host, then give the leases and the heartbeat up at once."""
        with self._lock:
            self._deadlines.clear()
        self.first = False
        HostLease.objects.filter(role=self.role, owner=self.name).update(expires_at=FREE)
        ProcessHeartbeat.objects.filter(name=self.name).delete()
