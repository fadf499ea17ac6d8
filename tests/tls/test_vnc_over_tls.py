"""The graphical console of a VM on a qemu+tls host: its display speaks TLS only (the
host's qemu.conf: vnc_tls with client certificates), and the panel reaches it with the
host's uploaded certificates through its loopback relay, on the real TLS libvirtd."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.exceptions import ConflictError
from panel.models import Host
from panel.tasks import refresh_host_task
from panel.vnc_tls import Display, DisplayRefused, connect_display
from tests.conftest import kernel_vm
from tests.tls.test_add_tls_host import _project, api_add
from tests.tls_host import Issued, issue
from vms import consoles
from vms.consoles import vnc_target
from vms.models import VirtualMachine
from vms.services import create
from vms.tasks import vm_create_task

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db, pytest.mark.timeout(240)]


def read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        assert part, f"closed after {data!r}"
        data += part
    return data


def security_types(address: str, port: int) -> bytes:
    """The security types a display offers a plain RFB client."""
    with socket.create_connection((address, port), timeout=10) as sock:
        assert read(sock, 12).startswith(b"RFB 003.008")
        sock.sendall(b"RFB 003.008\n")
        return read(sock, read(sock, 1)[0])


def desktop_name(address: str, port: int) -> bytes:
    """The desktop name of the ServerInit a plain RFB client gets (no password)."""
    with socket.create_connection((address, port), timeout=10) as sock:
        assert read(sock, 12).startswith(b"RFB 003.008")
        sock.sendall(b"RFB 003.008\n")
        assert read(sock, read(sock, 1)[0]) == b"\x01"  # security None, nothing else
        sock.sendall(b"\x01")
        assert read(sock, 4) == b"\x00\x00\x00\x00"
        sock.sendall(b"\x01")  # shared
        read(sock, 20)
        return read(sock, int.from_bytes(read(sock, 4), "big"))


def pki_set(directory: Path, ca: bytes, client: Issued) -> Path:
    """Certificates in libvirt's pkipath layout."""
    directory.mkdir()
    (directory / "cacert.pem").write_bytes(ca)
    (directory / "clientcert.pem").write_bytes(client.cert)
    (directory / "clientkey.pem").write_bytes(client.key)
    return directory


def test_a_tls_hosts_display_is_reached_over_tls_with_the_hosts_certificates(
    admin_client, admin_user, tls_host_uri, test_pki, panel_test_guest, tls_domains, tmp_path
):
    response = api_add(admin_client, "tls-vnc", tls_host_uri, test_pki.files())
    assert response.status_code == 201, response.json()
    host = Host.objects.get(name="tls-vnc")
    refresh_host_task(host.jobs.first().pk)
    job = create.create_vm(
        create.CreateRequest.parse(
            kernel_vm(_project(admin_user), "tls-display", host=host.pk, os_variant="generic")
        ),
        actor=Actor(admin_user),
    )
    vm_create_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.log
    vm = VirtualMachine.objects.get(pk=job.result["vm"])
    tls_domains.append(str(vm.pk))
    info = hypervisor.get_domain(tls_host_uri, str(vm.pk))
    display = next(g for g in info.graphics if g.type == "vnc")

    # In clear, the display offers VeNCrypt only: nothing is readable without TLS.
    assert security_types("127.0.0.1", display.port) == bytes([19])

    # The panel's console reaches it over TLS and shows this VM's desktop.
    target = vnc_target(str(vm.pk))
    assert target.port != display.port
    assert desktop_name(target.host, target.port) == f"QEMU ({info.name})".encode()

    # A display whose certificate is not of the CA the panel trusts is refused, and a
    # client certificate of another CA is refused by the display: each says so.
    stranger = issue(test_pki.other_ca, "panel-stranger")
    wrong_ca = pki_set(tmp_path / "wrong-ca", test_pki.other_ca.cert, stranger)
    with pytest.raises(DisplayRefused, match="certificate of the display .* is refused"):
        connect_display(Display("127.0.0.1", display.port, "127.0.0.1", wrong_ca))
    wrong_client = pki_set(tmp_path / "wrong-client", test_pki.ca.cert, stranger)
    with pytest.raises(DisplayRefused, match="refused the panel.s client certificate"):
        connect_display(Display("127.0.0.1", display.port, "127.0.0.1", wrong_client))


def test_a_display_on_a_tls_hosts_loopback_elsewhere_is_refused_with_what_to_do():
    host = Host.objects.create(name="far", uri="qemu+tls://far.example/system")
    vm = VirtualMachine(name="v", host=host)
    with pytest.raises(ConflictError, match="Set vnc_listen in that host's qemu.conf"):
        consoles._tls_display(vm, "127.0.0.1", 5900)
