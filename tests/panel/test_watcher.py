"""The host watcher mirrors domain events of the real libvirtd.

Deadlines here are generous (eventual delivery on a loaded machine); how fast an event
reaches the database and a browser is measured by benchmarks/vm_inventory.py --real."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from panel import hypervisor
from panel.choices import HostState
from panel.models import Host
from panel.watcher import HostWatcher
from tests.conftest import LOCAL_URI, guest_spec
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


# Long enough for a loaded machine; a watcher that works answers in well under a second.
DEADLINE = 45.0


def wait_for(predicate, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def watcher(transactional_db):
    host = Host.objects.create(name="local", uri=LOCAL_URI, state=HostState.UP)
    w = HostWatcher(rescan_seconds=1.0)

    def run():
        try:
            w.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert wait_for(lambda: host.pk in w.watches), "the watcher did not subscribe to the host"
    yield host
    w.stop()
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_it_mirrors_a_guest_started_and_destroyed_outside_the_panel(watcher, panel_test_guest):
    info = hypervisor.create_transient(LOCAL_URI, guest_spec(panel_test_guest))
    try:
        assert wait_for(
            lambda: VirtualMachine.objects.filter(pk=info.uuid, state="running").exists()
        ), "a started guest did not appear as running"
        vm = VirtualMachine.objects.get(pk=info.uuid)
        assert (vm.host_id, vm.name, vm.persistent) == (watcher.pk, info.name, False)
    finally:
        hypervisor.destroy_domain(LOCAL_URI, info.uuid)
    assert wait_for(
        lambda: VirtualMachine.objects.filter(pk=info.uuid, state="missing").exists()
    ), "a transient guest that stopped is gone from libvirt: its row stays, marked missing"


def test_it_marks_an_undefined_domain_missing(watcher, panel_test_guest):
    info = hypervisor.define_domain(LOCAL_URI, guest_spec(panel_test_guest))
    try:
        assert wait_for(
            lambda: VirtualMachine.objects.filter(pk=info.uuid, state="shutoff").exists()
        )
    finally:
        hypervisor.undefine_domain(LOCAL_URI, info.uuid)
    assert wait_for(lambda: VirtualMachine.objects.filter(pk=info.uuid, state="missing").exists())


def test_it_marks_a_host_down_when_its_libvirtd_stops_and_up_when_it_returns(
    transactional_db, second_host_uri
):
    import subprocess

    from tests.second_host import SECOND_HOST_SCRIPT

    host = Host.objects.create(name="second", uri=second_host_uri, state=HostState.UP)
    w = HostWatcher(rescan_seconds=1.0)

    def run():
        try:
            w.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: host.pk in w.watches)
        subprocess.run(["bash", str(SECOND_HOST_SCRIPT), "stop"], check=True, capture_output=True)
        assert wait_for(lambda: Host.objects.get(pk=host.pk).state == HostState.DOWN), (
            "a host whose libvirtd stopped should show as down"
        )
        assert Host.objects.get(pk=host.pk).last_error
        port = second_host_uri.rsplit(":", 1)[1].split("/")[0]
        subprocess.run(
            ["bash", str(SECOND_HOST_SCRIPT), "start", port], check=True, capture_output=True
        )
        assert wait_for(lambda: Host.objects.get(pk=host.pk).state == HostState.UP)
        assert wait_for(lambda: host.pk in w.watches), "the watch is taken up again"
    finally:
        w.stop()
        thread.join(DEADLINE)
