"""The second libvirt host (scripts/second-libvirtd.sh) as a multi-host and
live-migration target for qemu:///system.

Guests here have no network interface at all; the only traffic is libvirt RPC
and QEMU migration streams on 127.0.0.1.
"""

import time
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

pytestmark = pytest.mark.libvirt

MAIN_URI = "qemu:///system"


def migration_uri() -> str:
    """A free loopback port for qemu's migration stream (another run may hold 49152)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def guest_xml(name, guest):
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{guest.kernel}</kernel>
    <initrd>{guest.initrd}</initrd>
    <cmdline>{guest.cmdline}</cmdline>
  </os>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
"""


def host_uuid(conn):
    return ET.fromstring(conn.getCapabilities()).findtext("host/uuid")


def domain_names(conn):
    return {dom.name() for dom in conn.listAllDomains()}


def destroy_if_present(conn, name):
    try:
        conn.lookupByName(name).destroy()
    except libvirt.libvirtError:
        pass


def wait_running(conn, name, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        state = conn.lookupByName(name).state()[0]
        if state == libvirt.VIR_DOMAIN_RUNNING or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


@pytest.fixture
def guest_name():
    return f"paneltest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def main_conn():
    conn = libvirt.open(MAIN_URI)
    yield conn
    conn.close()


@pytest.fixture
def second_conn(second_host_uri):
    conn = libvirt.open(second_host_uri)
    yield conn
    conn.close()


@pytest.mark.timeout(120)
def test_it_answers_as_a_host_with_its_own_uuid(second_conn, main_conn):
    assert second_conn.isAlive()
    assert second_conn.getType() == "QEMU"
    second_uuid = host_uuid(second_conn)
    assert second_uuid
    assert second_uuid != host_uuid(main_conn)


@pytest.mark.timeout(120)
def test_it_runs_a_domain_the_main_host_does_not_list(
    second_conn, main_conn, panel_test_guest, guest_name
):
    try:
        dom = second_conn.createXML(guest_xml(guest_name, panel_test_guest), 0)
        assert wait_running(second_conn, guest_name) == libvirt.VIR_DOMAIN_RUNNING
        assert guest_name in domain_names(second_conn)
        assert guest_name not in domain_names(main_conn)
        with pytest.raises(libvirt.libvirtError):
            main_conn.lookupByUUIDString(dom.UUIDString())
    finally:
        destroy_if_present(second_conn, guest_name)
    assert guest_name not in domain_names(second_conn)


@pytest.mark.timeout(120)
def test_it_live_migrates_a_guest_from_the_main_host_and_back(
    second_host_uri, second_conn, main_conn, panel_test_guest, guest_name
):
    try:
        dom = main_conn.createXML(guest_xml(guest_name, panel_test_guest), 0)
        dom_uuid = dom.UUIDString()
        assert wait_running(main_conn, guest_name) == libvirt.VIR_DOMAIN_RUNNING

        # There: peer-to-peer, qemu:///system's daemon talks to the second
        # host over TCP, as the panel would between two real hosts.
        dom.migrateToURI3(
            second_host_uri,
            {libvirt.VIR_MIGRATE_PARAM_URI: migration_uri()},
            libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER,
        )
        moved = second_conn.lookupByName(guest_name)
        assert moved.UUIDString() == dom_uuid
        assert moved.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert guest_name not in domain_names(main_conn)

        # Back: managed by this client, since from inside the second host's
        # namespace qemu:///system would be the second host itself.
        back = moved.migrate(main_conn, libvirt.VIR_MIGRATE_LIVE, None, migration_uri(), 0)
        assert back.UUIDString() == dom_uuid
        assert main_conn.lookupByName(guest_name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert guest_name not in domain_names(second_conn)
    finally:
        destroy_if_present(second_conn, guest_name)
        destroy_if_present(main_conn, guest_name)
