"""The stats collector (`manage.py collect_stats`).

Every interval it reads each host in bulk (hypervisor.host_counters: one
getAllDomainStats, never a call per VM), turns counters into rates against
the previous reading, stores raw points and finished rollups, and pushes the
new samples to open pages (groups vm-<uuid> and host-<id>). Web requests only
ever read what it stored.

Any number of collector processes share the hosts out by leases (panel/leases.py):
each reads only the hosts it holds. The fleet's series sums every host, so one of
them writes it: the first live collector by name, from its own readings and the
latest samples the others stored.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

from django.db import close_old_connections

from panel import events, hypervisor
from panel.leases import LeaseKeeper
from panel.models import Host

from .series import Downsampler, fleet_sample, host_sample, vm_sample
from .store import StatsStore, interval

log = logging.getLogger(__name__)

# Host tuning facts change rarely (someone runs tuned-adm, enables KSM): once a minute.
HOST_INFO_SECONDS = 60
# A host that failed is read again after this long (the watcher tells when it is back too).
RETRY_SECONDS = 30


class Collector:
    """Keeps the previous reading per host and the open rollup buckets per series.

    With a LeaseKeeper it reads the hosts whose collector lease it holds; without one,
    every host (a single collector, as tests and benchmarks drive it)."""

    def __init__(
        self,
        step: int | None = None,
        store: StatsStore | None = None,
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.keeper = keeper
        self.step = step or interval()
        self.store = store or StatsStore(self.step)
        self.previous: dict[int, hypervisor.HostCounters] = {}
        # Each VM's last complete reading and its time: a busy VM may skip a reading.
        self.last_vm: dict[str, tuple[float, hypervisor.DomainCounters]] = {}
        self.downsampler = Downsampler()
        self.failing: set[int] = set()
        self.retry_at: dict[int, float] = {}
        self.pending: dict[int, Future] = {}
        self.timings: dict[int, float] = {}
        # The hosts whose tuning facts this collector has read (or tried to).
        self.info_read: set[int] = set()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="collect")

    def stop(self) -> None:
        self._stop.set()

    def hosts(self) -> list[Host]:
        """The hosts this collector reads now."""
        hosts = Host.objects.only("pk", "name", "uri")
        if self.keeper is not None:
            hosts = hosts.filter(pk__in=self.keeper.owned())
        return list(hosts)

    def _read(self, host: Host) -> hypervisor.HostCounters | None:
        start = time.perf_counter()
        try:
            counters = hypervisor.host_counters(host.uri)
        except hypervisor.HypervisorError as exc:
            if host.pk not in self.failing:
                log.warning("no stats from host %s (%s): %s", host.name, host.uri, exc)
                self.failing.add(host.pk)
            # A host that is down is tried again later, not every interval.
            self.retry_at[host.pk] = time.monotonic() + RETRY_SECONDS
            return None
        self.failing.discard(host.pk)
        self.timings[host.pk] = time.perf_counter() - start
        return counters

    def read_host_info(self, hosts: list[Host]) -> None:
        """Each host's tuning facts (CPUs, NUMA cells, huge pages, KSM, THP, tuned profile)."""
        for host in hosts:
            self.info_read.add(host.pk)
            if host.pk in self.failing:
                continue
            try:
                info = hypervisor.host_tuning(host.uri)
            except hypervisor.HypervisorError as exc:
                log.warning("no tuning facts from host %s: %s", host.name, exc)
                continue
            data = dataclasses.asdict(info)
            data["local"] = hypervisor.is_local(host.uri)
            self.store.set_host_info(str(host.pk), data)

    def _read_all(self, hosts: list[Host]) -> list[hypervisor.HostCounters | None]:
        """Read the hosts in parallel, waiting at most two intervals: a host that hangs (an
        unreachable address waits for the connect timeout) costs only its own samples and
        stretches one cycle at most. A reading that came in later still is used in the next
        cycle (it carries its own time)."""
        readings: dict[int, hypervisor.HostCounters | None] = {}
        for pk, future in list(self.pending.items()):
            if future.done():
                del self.pending[pk]
                readings[pk] = future.result()
        now = time.monotonic()
        futures: dict[int, Future] = {}
        for host in hosts:
            busy = host.pk in readings or host.pk in self.pending
            if not busy and self.retry_at.get(host.pk, 0) <= now:
                futures[host.pk] = self._pool.submit(self._read, host)
        wait(list(futures.values()), timeout=2 * self.step)
        for pk, future in futures.items():
            if future.done():
                readings[pk] = future.result()
            else:
                self.pending[pk] = future
        return [readings.get(host.pk) for host in hosts]

    def cycle(self) -> int:
        """Read every host once, store and push what it gave; return the VM samples made."""
        started = time.perf_counter()
        hosts = self.hosts()
        readings = self._read_all(hosts)
        if self.keeper is not None:
            # A host given up while it was read is its new holder's to store.
            held = self.keeper.owned()
            readings = [r if h.pk in held else None for h, r in zip(hosts, readings, strict=True)]
        raw: list[tuple[str, str, float, dict]] = []
        messages: list = []
        host_samples = []
        seen: set[str] = set()
        gone: list[str] = []
        for host, cur in zip(hosts, readings, strict=True):
            prev = self.previous.get(host.pk)
            if cur is None:
                # Not read this time: keep its open rollup buckets for when it answers again.
                seen.add(f"host:{host.pk}")
                if prev is not None:
                    seen.update(f"vm:{d.uuid}" for d in prev.domains)
                continue
            self.previous[host.pk] = cur
            before = {d.uuid for d in prev.domains} if prev else set()
            vms = self._vm_samples(cur, before, seen, raw, messages)
            gone.extend(before)
            for uuid in before:
                self.last_vm.pop(uuid, None)
            sample = host_sample(prev, cur, vms)
            seen.add(f"host:{host.pk}")
            if sample is not None:
                host_samples.append(sample)
                raw.append(("host", str(host.pk), cur.at, sample))
                messages.append(
                    (events.host_group(host.pk), _update("host", str(host.pk), cur.at, sample))
                )
        if self.keeper is None or self.keeper.first:
            everyone = host_samples + self._others_latest(hosts)
            if everyone:
                raw.append(("fleet", "all", time.time(), fleet_sample(everyone)))
                seen.add("fleet:all")
        self._save(hosts, raw, seen, gone)
        if messages:
            events.publish_many(messages)
        made = sum(1 for r in raw if r[0] == "vm")
        log.debug(
            "cycle: %d hosts, %d VM samples in %.3f s (interval %d s)",
            len(hosts),
            made,
            time.perf_counter() - started,
            self.step,
        )
        return made

    def _vm_samples(
        self,
        cur: hypervisor.HostCounters,
        before: set[str],
        seen: set[str],
        raw: list,
        messages: list,
    ) -> list[dict]:
        """The VM samples of a host's reading (a VM needs two readings for one), each added
        to raw and to the messages for its page; the VMs read are marked in seen and taken
        out of before (what remains there is gone)."""
        vms = []
        for dom in cur.domains:
            seen.add(f"vm:{dom.uuid}")
            before.discard(dom.uuid)
            if dom.partial:
                continue
            last = self.last_vm.get(dom.uuid)
            self.last_vm[dom.uuid] = (cur.at, dom)
            sample = vm_sample(last[1], dom, cur.at - last[0]) if last else None
            if sample is None:
                continue
            vms.append(sample)
            raw.append(("vm", dom.uuid, cur.at, sample))
            messages.append((events.vm_group(dom.uuid), _update("vm", dom.uuid, cur.at, sample)))
        return vms

    def _save(self, hosts: list[Host], raw: list, seen: set[str], gone: list[str]) -> None:
        """Store the cycle's samples and their rollups, drop the series of what is gone,
        and forget the readings of hosts no longer this collector's."""
        rollups = []
        for kind, ident, t, values in raw:
            for tier, bucket, avg in self.downsampler.add(f"{kind}:{ident}", t, values):
                rollups.append((kind, ident, tier, bucket, avg))
        self.downsampler.keep_only(seen)
        self.store.write(raw, rollups)
        self.store.forget("vm", gone)
        for host_id in [h for h in self.previous if h not in {h.pk for h in hosts}]:
            # Removed, or now another collector's: a later reading starts afresh.
            for dom in self.previous.pop(host_id).domains:
                self.last_vm.pop(dom.uuid, None)

    def _others_latest(self, hosts: list[Host]) -> list[dict]:
        """The fresh latest samples of the hosts other collectors read (none alone)."""
        if self.keeper is None:
            return []
        mine = {str(h.pk) for h in hosts}
        latest = self.store.latest_all("host", time.time(), 2 * self.step)
        return [sample for ident, sample in latest.items() if ident not in mine]

    def run(self) -> None:
        """Collect every `step` seconds until stopped, on a fixed beat (no drift)."""
        if self.keeper is not None:
            self.keeper.start()
        next_at = time.monotonic()
        next_info = next_at
        while not self._stop.is_set():
            close_old_connections()
            try:
                self.cycle()
                hosts = self.hosts()
                if time.monotonic() >= next_info:
                    next_info = time.monotonic() + HOST_INFO_SECONDS
                else:
                    # Between the rounds, only the hosts taken up since.
                    hosts = [h for h in hosts if h.pk not in self.info_read]
                if hosts:
                    self.read_host_info(hosts)
            except Exception:  # noqa: BLE001 - one bad cycle must not end the collector
                log.exception("stats collection cycle failed")
            next_at += self.step
            delay = next_at - time.monotonic()
            if delay < 0:
                # Too slow for the interval: skip the beats we missed instead of bursting.
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)
        self._pool.shutdown(wait=False)
        if self.keeper is not None:
            self.keeper.stop()


def _update(kind: str, ident: str, t: float, sample: dict) -> events.StatsUpdate:
    return {"type": "stats.update", "kind": kind, "id": ident, "sample": {"t": t, **sample}}
