"""Several watcher and collector processes share the hosts out (panel/leases.py), as
`manage.py watch_hosts` and `manage.py collect_stats` run under supervisord with
PANEL_WATCHERS / PANEL_COLLECTORS above 1.

Three processes of a kind over twelve simulated hosts (libvirt's test:/// driver, one node
file each) and the real local libvirtd: every host ends with exactly one live holder and
the shares are even; one process killed with SIGKILL has its hosts held by the others
within 15 s, and the panel keeps following them: a guest started on the real host shows
up in the VM list, the simulated hosts the killed watcher held are caught up, and every
VM keeps getting usage samples. One stopped cleanly hands its hosts over at once.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from monitoring.store import StatsStore
from panel import hypervisor
from panel.choices import HostState, ProcessRole
from panel.leases import LEASE_SECONDS, database_now
from panel.models import Host, HostLease
from tests.conftest import LOCAL_URI, guest_spec
from tests.stack import spawn, stop_process
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.sqlite, pytest.mark.timeout(300)]

SIM_HOSTS = 12
VMS_PER_HOST = 2
PROCESSES = 3
# A killed process's leases end at most LEASE_SECONDS after its last heartbeat, and the
# others look every HEARTBEAT_SECONDS: 13 s, and the promise is 15.
TAKEN_WITHIN = 15.0
# Generous: for things that take a second or two on a machine that is not loaded.
DEADLINE = 60.0


def wait_until(what: str, probe, timeout: float = DEADLINE):  # type: ignore[no-untyped-def]
    """Poll probe until it returns something true; that, or fail naming what never came."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)


def node_file(path: Path, vms: list[str]) -> None:
    """A test:/// host holding one running domain per uuid."""
    domains = "".join(
        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{path.stem}-vm{n}</name><uuid>{vm}</uuid>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os>"
        "<test:runstate>1</test:runstate></domain>"
        for n, vm in enumerate(vms)
    )
    path.write_text(
        "<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
        f"<cores>4</cores><threads>1</threads></cpu><memory>16777216</memory>{domains}</node>"
    )


@pytest.fixture
def hosts(transactional_db, tmp_path) -> dict[int, list[str]]:
    """{host id: the uuids of its running VMs}: the simulated hosts, then the local one
    (no VMs of the test's own yet)."""
    found = {}
    for n in range(SIM_HOSTS):
        vms = [str(uuid.uuid4()) for _ in range(VMS_PER_HOST)]
        path = tmp_path / f"node-{n:02d}.xml"
        node_file(path, vms)
        host = Host.objects.create(name=f"sim-{n:02d}", uri=f"test://{path}", state=HostState.UP)
        found[host.pk] = vms
    local = Host.objects.create(name="local", uri=LOCAL_URI, state=HostState.UP)
    found[local.pk] = []
    return found


class Processes:
    """`manage.py <command>` started `count` times, each logging to its own file."""

    def __init__(self, command: list[str], count: int, logs: Path) -> None:
        self.procs = {}
        for n in range(count):
            proc = spawn([sys.executable, "manage.py", *command], logs / f"{command[0]}-{n}.log")
            self.procs[proc.pid] = proc

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.procs.pop(pid).wait(10)

    def terminate(self, pid: int) -> None:
        stop_process(self.procs.pop(pid))

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)

    def check_running(self) -> None:
        for pid, proc in self.procs.items():
            assert proc.poll() is None, f"process {pid} exited with {proc.returncode}"


def holders(role: ProcessRole) -> dict[int, int]:
    """{host id: pid of the process whose lease on it holds now}."""
    now = database_now()
    return {
        host: int(owner.split(":")[1])
        for host, owner in HostLease.objects.filter(role=role, expires_at__gte=now).values_list(
            "host_id", "owner"
        )
    }


def evenly_held(role: ProcessRole, hosts, processes: Processes) -> dict[int, int] | None:  # type: ignore[no-untyped-def]
    """The holders, once every host is held by one of the processes with even shares."""
    processes.check_running()
    held = holders(role)
    if set(held) != set(hosts) or not set(held.values()) <= set(processes.procs):
        return None
    counts = collections.Counter(held.values())
    if len(counts) != len(processes.procs) or max(counts.values()) - min(counts.values()) > 1:
        return None
    return held


@pytest.mark.stack
def test_watchers_share_the_hosts_and_take_over_those_of_a_killed_one(
    stack, hosts, panel_test_guest, tmp_path
):
    local = Host.objects.get(uri=LOCAL_URI)
    watchers = Processes(["watch_hosts"], PROCESSES, tmp_path)
    defined = None
    try:
        held = wait_until(
            "three watchers hold every host, evenly",
            lambda: evenly_held(ProcessRole.WATCHER, hosts, watchers),
        )
        assert sorted(collections.Counter(held.values()).values()) == [4, 4, 5]

        victim = held[local.pk]
        watchers.kill(victim)
        killed = time.monotonic()
        # Defined while the dead watcher's lease still holds the real host, so no watcher
        # sees it happen: only the catch-up of the one that takes the host over can.
        defined = hypervisor.define_domain(LOCAL_URI, guest_spec(panel_test_guest))
        assert holders(ProcessRole.WATCHER)[local.pk] == victim

        held = wait_until(
            "the two others hold the killed watcher's hosts",
            lambda: evenly_held(ProcessRole.WATCHER, hosts, watchers),
        )
        taken_after = time.monotonic() - killed
        print(f"the killed watcher's hosts were held again after {taken_after:.1f} s")
        assert taken_after <= TAKEN_WITHIN
        assert sorted(collections.Counter(held.values()).values()) == [6, 7]
        wait_until(
            "the domain defined while nobody watched the host is in the inventory",
            lambda: VirtualMachine.objects.filter(
                pk=defined.uuid, host=local, state="shutoff"
            ).exists(),
        )

        # The new holder of the real host follows its events: a guest started outside the
        # panel shows as running, then as missing once it stops.
        info = hypervisor.create_transient(LOCAL_URI, guest_spec(panel_test_guest))
        try:
            wait_until(
                "the guest started on the real host shows as running",
                lambda: VirtualMachine.objects.filter(
                    pk=info.uuid, host=local, state="running"
                ).exists(),
            )
        finally:
            hypervisor.destroy_domain(LOCAL_URI, info.uuid)
        wait_until(
            "the guest that stopped shows as missing",
            lambda: VirtualMachine.objects.filter(pk=info.uuid, state="missing").exists(),
        )

        # A watcher stopped cleanly releases its hosts: the last one holds them all long
        # before the leases would have ended.
        watchers.terminate(min(watchers.procs))
        stopped = time.monotonic()
        wait_until(
            "the last watcher holds every host",
            lambda: evenly_held(ProcessRole.WATCHER, hosts, watchers),
        )
        assert time.monotonic() - stopped < LEASE_SECONDS
    finally:
        watchers.stop()
        if defined is not None:
            with contextlib.suppress(hypervisor.HypervisorError):
                hypervisor.undefine_domain(LOCAL_URI, defined.uuid)


def test_collectors_share_the_hosts_and_keep_sampling_every_vm_after_one_is_killed(
    hosts, tiny_guest, tmp_path
):
    local = Host.objects.get(uri=LOCAL_URI)
    hosts[local.pk] = [tiny_guest.uuid]
    every_vm = [vm for vms in hosts.values() for vm in vms]
    store = StatsStore(step=1)

    def wipe() -> None:
        keys = list(store.client.scan_iter(f"{store.prefix}:*"))
        if keys:
            store.client.delete(*keys)

    def sampled_since(t: float) -> bool:
        latest = store.latest("vm", every_vm, time.time(), 60)
        return all(latest.get(vm, {}).get("t", 0) > t for vm in every_vm)

    def fleet_counts_every_host() -> bool:
        now = time.time()
        fleet = store.latest("fleet", ["all"], now, 3).get("all")
        per_host = store.latest("host", [str(h) for h in hosts], now, 3)
        return (
            bool(fleet)
            and len(per_host) == len(hosts)
            and (fleet["vms"] == sum(s["vms"] for s in per_host.values()))
        )

    wipe()
    collectors = Processes(["collect_stats", "--interval", "1"], PROCESSES, tmp_path)
    try:
        held = wait_until(
            "three collectors hold every host, evenly",
            lambda: evenly_held(ProcessRole.COLLECTOR, hosts, collectors),
        )
        started = time.time()
        wait_until("every VM has a usage sample", lambda: sampled_since(started))
        wait_until("the fleet's sample counts every host", fleet_counts_every_host)

        victim = held[local.pk]
        collectors.kill(victim)
        killed, killed_at = time.monotonic(), time.time()
        held = wait_until(
            "the two others hold the killed collector's hosts",
            lambda: evenly_held(ProcessRole.COLLECTOR, hosts, collectors),
        )
        taken_after = time.monotonic() - killed
        assert taken_after <= TAKEN_WITHIN
        # A rate needs two readings: the first samples come a cycle or two later.
        wait_until(
            "every VM, those of the killed collector's hosts too, has a sample made since",
            lambda: sampled_since(killed_at),
        )
        print(
            f"the killed collector's hosts were held again after {taken_after:.1f} s; every VM "
            f"had a new sample after {time.monotonic() - killed:.1f} s"
        )
        wait_until("the fleet's sample counts every host", fleet_counts_every_host)
    finally:
        collectors.stop()
        wipe()
