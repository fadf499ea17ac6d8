"""Attack: make the panel fetch from itself through an install tree's host name.

An operator (a tenant: everything inside their project, and may be hostile) creates a
VM installed from a network tree whose URL names a host that is not
`localhost` nor an address, but resolves to the panel's own machine (or its private
network, or a cloud's metadata service). The old check read the URL alone, so the
worker would fetch the "installer" from whatever listens there: a service meant only
for the machine itself. A name can also answer a public address to the check and a
private one to the fetch (DNS rebinding), and a public server can redirect inside.

What the panel does: it resolves the name when the VM is created and refuses (400 on
`location`, nothing queued) when any of its addresses is loopback, private, link-local,
shared, reserved or multicast, IPv4 inside IPv6 included; the job resolves again, connects
to exactly the address it checked (Host header and TLS name from the URL) and checks every
redirect the same way. tests/hostile/test_install_tree_ssrf.py tests the rebinding and
the redirect hop by hop, with names the test resolves itself.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from panel.models import Job
from storage import services as storage_services
from storage.models import StoragePool
from tests.conftest import LOCAL_URI
from tests.hostile.test_install_tree_ssrf import own_name
from vms.models import VirtualMachine

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]

GUEST_DIR = Path("/var/lib/libvirt/boot/panel-test-guest")
IMAGES = Path("/var/lib/libvirt/images")


@pytest.fixture
def pool(people, local_host) -> Iterator[StoragePool]:
    """A dir pool an admin made, where the member's VM would get its disk."""
    path = IMAGES / f"paneltest-{uuid.uuid4().hex[:8]}"
    made = storage_services.create_pool(
        local_host,
        {"name": path.name, "type": "dir", "target_path": str(path)},
        actor=Actor(people["admin"]),
    )
    try:
        yield made
    finally:
        for info in hypervisor.list_domains(LOCAL_URI):
            if info.name.startswith("ssrf-"):
                with contextlib.suppress(hypervisor.HypervisorError):
                    hypervisor.undefine_domain(LOCAL_URI, info.uuid)
        with contextlib.suppress(hypervisor.HypervisorError):
            hv_storage.delete_pool(LOCAL_URI, made.name)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def internal_service(tmp_path) -> Iterator[tuple[str, int, list[str]]]:
    """A web server only this machine should reach, on the address its own host name
    resolves to, laid out like an install tree: (that name, its port, paths requested)."""
    name, address = own_name()
    tree = tmp_path / "images" / "pxeboot"
    tree.mkdir(parents=True)
    shutil.copy(GUEST_DIR / "vmlinuz", tree / "vmlinuz")
    shutil.copy(GUEST_DIR / "initrd.img", tree / "initrd.img")
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def send_head(self):
            seen.append(self.path)
            return super().send_head()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield name, server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_it_refuses_a_tree_whose_name_resolves_to_the_panels_own_machine(
    attacker, people, local_host, pool, internal_service
):
    name, port, seen = internal_service
    address = socket.getaddrinfo(name, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    operator = attacker("operator")

    response = operator.api(
        "POST",
        "vms/",
        json={
            "name": "ssrf-tree",
            "project": people.alpha.pk,
            "host": local_host.pk,
            "vcpus": 1,
            "memory_mib": 96,
            "disks": [{"pool": pool.pk, "size_gib": 0.05}],
            "install": {"method": "url", "location": f"http://{name}:{port}/"},
            "start": False,
        },
    )

    assert response.status_code == 400, response.text
    detail = response.json()["location"]
    refusal = " ".join(detail) if isinstance(detail, list) else str(detail)
    assert f"{name} resolves to {address}, a loopback, private or link-local address" in refusal
    assert not Job.objects.filter(kind="vm.create").exists()
    assert not VirtualMachine.objects.filter(name="ssrf-tree").exists()
    assert seen == []
