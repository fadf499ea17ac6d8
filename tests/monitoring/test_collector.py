"""The collector against the real libvirtd with the tiny guest: stats appear, CPU follows load.

Counted in collection cycles, not seconds: how long a cycle takes is measured by
benchmarks/monitoring.py (whole cycle with 1,000 VMs, and with a host that hangs)."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from monitoring.collector import Collector
from panel import hypervisor
from tests.conftest import LOCAL_URI

pytestmark = [pytest.mark.libvirt]

STEP = 1
CONNECT_TIMEOUT = 10


def collect_until(collector: Collector, predicate, cycles: int) -> bool:
    """Run up to `cycles` collection cycles on the collector's beat (one every STEP
    seconds, as its run() does) until predicate() holds; whether it did."""
    for _ in range(cycles):
        started = time.monotonic()
        collector.cycle()
        done = predicate()
        time.sleep(max(0.0, STEP - (time.monotonic() - started)))
        if done:
            return True
    return False


@pytest.fixture
def console(make_vm):
    vm = make_vm(running=True)
    stream = hypervisor.open_console(LOCAL_URI, str(vm.pk))
    try:
        stream.send(b"\r")
        stream.read_until(b"guest# ", 60)
        yield vm, stream
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            stream.send(b"kill %1 2>/dev/null; kill $(jobs -p) 2>/dev/null\r")
        stream.close()
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, str(vm.pk))


def test_it_shows_stats_once_it_has_two_readings_and_cpu_rising_with_a_busy_loop(
    console, store, local_host
):
    vm, stream = console
    vm_id = str(vm.pk)
    collector = Collector(step=STEP, store=store)

    def latest() -> dict | None:
        return store.latest("vm", [vm_id], time.time(), 3 * STEP).get(vm_id)

    # A rate needs two readings: the first cycle makes no sample, a later one does (the
    # second, unless a slow reading spills into the next cycle).
    collector.cycle()
    assert latest() is None
    assert collect_until(collector, lambda: latest() is not None, cycles=10)
    host = store.latest("host", [str(local_host.pk)], time.time(), 3 * STEP)
    assert host[str(local_host.pk)]["mem_total"] > 0

    seen = [latest()["t"]]

    def next_cpu() -> float:
        """The CPU % of the next new sample (a busy host may skip an interval)."""
        assert collect_until(collector, lambda: (latest() or {}).get("t", 0) > seen[-1], 5)
        sample = latest()
        seen.append(sample["t"])
        return sample["cpu"]

    idle = [next_cpu() for _ in range(4)]
    assert latest()["mem_balloon"] == 96 * 1024 * 1024

    stream.send(b"while :; do :; done &\r")
    stream.read_until(b"guest# ", 10, start=len(stream.output()))
    busy = [next_cpu() for _ in range(6)]
    stream.send(b"kill %1\r")
    # Idle, past the end of its boot, the guest rests. The busy loop keeps its one vCPU as
    # busy as the host lets it: how much that is depends on what else the machine's cores
    # run, so no fixed figure; but every busy sample (the first may straddle the loop's
    # start) stands clearly above every idle one.
    assert max(idle[1:]) < 20, (idle, busy)
    assert min(busy[1:]) > 2 * max(idle[1:]) + 5, (idle, busy)
    history = store.history("vm", vm_id, "1h", time.time())
    assert len(history["t"]) >= 11, history
    # The graph's history holds every sample the live view showed (and, on a loaded host,
    # also readings that came late, after a newer one had been shown).
    for shown in idle + busy:
        assert any(abs(kept - shown) <= 0.05 for kept in history["cpu"]), (shown, history)


def test_it_keeps_its_beat_while_a_host_hangs(make_vm, local_host, store, settings):
    """A host that accepts the connection and never answers (like one behind a dead link)
    costs only its own samples: the local host's VM is still read every cycle, and no cycle
    waits for the hung host's connect timeout."""
    from panel.choices import HostState
    from panel.models import Host

    # Far above what a cycle takes (it waits at most two intervals for a host): a cycle
    # that lasted this long waited for the hung host.
    settings.PANEL_CONNECT_TIMEOUT = CONNECT_TIMEOUT
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hung = Host.objects.create(
        name="hung",
        uri=f"qemu+tcp://127.0.0.1:{silent.getsockname()[1]}/system",
        state=HostState.UP,
    )
    vm = make_vm(running=True)
    try:
        collector = Collector(step=STEP, store=store)
        durations, stamps = [], set()
        # On the collector's beat until the hung host's connect has timed out, and a few more.
        deadline = time.monotonic() + 6 * CONNECT_TIMEOUT
        after = 0
        while after < 3:
            assert time.monotonic() < deadline, f"the hung host never failed: {durations}"
            after += hung.pk in collector.failing
            started = time.monotonic()
            collector.cycle()
            durations.append(time.monotonic() - started)
            sample = store.latest("vm", [str(vm.pk)], time.time(), 3 * STEP).get(str(vm.pk))
            if sample:
                stamps.add(sample["t"])
            time.sleep(max(0.0, STEP - durations[-1]))
        # No cycle waited for the connect timeout; the local VM kept being read (a new
        # sample in nearly every cycle: the first makes none, a slow one may skip one).
        assert max(durations) < CONNECT_TIMEOUT, durations
        assert len(stamps) >= len(durations) - 3, (durations, stamps)
        # Its connect timed out: it is left alone for a while instead of every interval.
        assert hung.pk in collector.failing and collector.retry_at[hung.pk] > time.monotonic()
    finally:
        silent.close()
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, str(vm.pk))
