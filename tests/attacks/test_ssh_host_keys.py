"""Attacks on how the panel reaches qemu+ssh hosts.

- Someone who answers at a host's address before the admin looked (or after the host
  was replaced) gets the panel's libvirt connection: libvirt's ssh transport used to
  take the key it met first (or whatever ~/.ssh/known_hosts of the panel's user said).
  Now libvirt connects to a qemu+ssh host only with the one host key an admin confirmed,
  from a known_hosts file the panel writes for that host; a host with no confirmed key
  is not contacted at all: not by libvirt, not by a console tunnel.
- An admin's URI that names another SSH transport (qemu+libssh, qemu+libssh2), turns the
  host key check off or carries a password is refused before any connection, so no URI
  goes around the pinned key.
"""

from __future__ import annotations

import socket
import threading

import pytest

from panel import hypervisor, services, sshkeys
from panel.actors import Actor
from panel.choices import HostState
from panel.exceptions import ServiceError
from panel.models import AuditEvent, Host


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that counts the connections it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    reached: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            reached.append(conn)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], reached
    stop.set()
    thread.join(5)
    server.close()


def test_it_never_connects_to_a_host_whose_key_no_admin_confirmed(db, listener):
    port, reached = listener
    uri = hypervisor.check_uri(f"qemu+ssh://root@127.0.0.1:{port}/system")
    sshkeys.forget_known_hosts(uri)
    host = Host.objects.create(name="unpinned", uri=uri, state=HostState.UP)

    with pytest.raises(hypervisor.HostUnavailable, match="not confirmed"):
        hypervisor.host_facts(uri)
    with pytest.raises(hypervisor.HostUnavailable, match="not confirmed"):
        services.reconcile_host(host)
    with pytest.raises(sshkeys.SSHKeyError, match="not confirmed"):
        sshkeys.open_tunnel(uri, "127.0.0.1", 5900, 5)

    assert reached == [], "the panel connected to a host whose key nobody confirmed"
    host.refresh_from_db()
    assert host.state == HostState.DOWN and "not confirmed" in host.last_error


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("qemu+libssh://root@127.0.0.1/system", "rather than"),
        ("qemu+libssh2://root@127.0.0.1/system", "rather than"),
        ("qemu+ssh://root@127.0.0.1/system?no_verify=1", "no_verify"),
        ("qemu+ssh://root@127.0.0.1/system?known_hosts_verify=ignore", "known_hosts_verify"),
        ("qemu+ssh://root@127.0.0.1/system?known_hosts=/dev/null", "known_hosts"),
        ("qemu+ssh://root@127.0.0.1/system?keyfile=/etc/shadow", "keyfile"),
        ("qemu+ssh://root@127.0.0.1/system?command=/bin/sh", "command"),
        ("qemu+ssh://root@127.0.0.1/system?netcat=/bin/sh", "netcat"),
        ("qemu+ssh://root@127.0.0.1/system?socket=/run/x", "socket"),
        ("qemu+ssh://root:hunter2@127.0.0.1/system", "password"),
    ],
)
def test_it_refuses_uris_that_go_around_the_pinned_key(db, admin_user, listener, uri, says):
    with pytest.raises(ServiceError, match=says) as refused:
        services.add_host(name="sneaky", uri=uri, actor=Actor(admin_user))

    assert refused.value.field == "uri"
    assert not Host.objects.exists()
    assert not AuditEvent.objects.filter(action="host.add").exists()
    assert listener[1] == []
