"""Serial and VNC consoles of the tiny guest on the real libvirtd, through the
running panel (its web server) and websockify, with single-use tickets."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from panel import hypervisor, services
from panel.actors import Actor
from panel.models import AuditEvent, Host
from tests.conftest import LOCAL_URI, guest_spec
from tests.stack import ws_read_until
from vms.services import sync_domain

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def websockify(stack):
    return stack.websockify_url


@pytest.fixture
def world(transactional_db, django_user_model, panel_test_guest):
    """A running tiny guest (with VNC) in project alpha; an operator, a viewer and an outsider."""
    admin = django_user_model.objects.create_superuser("root", "", "root-pass-3k")
    alpha = services.create_project(name="alpha", actor=Actor(admin))
    beta = services.create_project(name="beta", actor=Actor(admin))
    users = {}
    for name, project, role in [
        ("op", alpha, "operator"),
        ("view", alpha, "viewer"),
        ("out", beta, "member"),
    ]:
        users[name] = django_user_model.objects.create_user(name, "", f"{name}-pass-8Kq")
        services.add_member(project, user=users[name], role=role, actor=Actor(admin))
    host = Host.objects.create(name="local", uri=LOCAL_URI, state="up")
    info = hypervisor.create_transient(
        LOCAL_URI, guest_spec(panel_test_guest, vnc=True, cmdline="console=tty0 console=ttyS0")
    )
    vm = sync_domain(host, info)
    vm.project = alpha
    vm.save()
    try:
        yield {"vm": vm, "users": users}
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, info.uuid)


def ticket(stack, user, vm, kind: str) -> tuple[int, dict]:
    token, _ = Token.objects.get_or_create(user=user)
    request = Request(
        f"{stack.url}/api/v1/vms/{vm.pk}/console/",
        data=json.dumps({"type": kind}).encode(),
        headers={"Authorization": f"Token {token.key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except Exception as exc:  # urllib raises HTTPError for 4xx
        return exc.code, json.loads(exc.read())  # type: ignore[attr-defined]


def vnc_reachable(websockify: str, token: str) -> bool:
    """Whether websockify relays RFB for this token (a refused token gets no greeting)."""
    try:
        with connect(
            f"{websockify}/?token={token}", subprotocols=["binary"], open_timeout=10
        ) as ws:
            return ws.recv(timeout=5).startswith(b"RFB")
    except (ConnectionClosed, InvalidHandshake, TimeoutError):
        return False


def close_code(url: str, origin: str) -> int:
    with connect(url, additional_headers={"Origin": origin}, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    return closed.value.rcvd.code


def test_it_runs_a_command_through_the_serial_websocket(stack, world):
    status, body = ticket(stack, world["users"]["op"], world["vm"], "serial")
    assert status == 200 and body["expires_in"] <= 60 and not body["view_only"]
    with connect(body["url"], additional_headers={"Origin": stack.url}, open_timeout=10) as ws:
        ws.send(b"\r")
        ws_read_until(ws, b"guest# ", 30)
        ws.send(b"echo hello-$((6*7))\r")
        assert b"hello-42" in ws_read_until(ws, b"hello-42", 15)
    assert AuditEvent.objects.filter(action="console.serial.open", username="op").exists()


def test_it_completes_the_rfb_handshake_through_websockify(stack, world, websockify):
    status, body = ticket(stack, world["users"]["op"], world["vm"], "vnc")
    assert status == 200
    token = body["ticket"]
    with connect(f"{websockify}/?token={token}", subprotocols=["binary"], open_timeout=10) as ws:
        greeting = ws.recv(timeout=10)
        assert greeting.startswith(b"RFB 003.00")
    # The same ticket again: websockify finds nothing and refuses.
    assert not vnc_reachable(websockify, token)
    _, fresh = ticket(stack, world["users"]["op"], world["vm"], "vnc")
    assert vnc_reachable(websockify, fresh["ticket"]), "a fresh ticket does reach the VM"


def test_it_refuses_bad_tickets_with_4xxx_codes(stack, world, websockify):
    vm, users = world["vm"], world["users"]
    base = f"{stack.ws_url}/ws/vms/{vm.pk}/serial/"
    assert close_code(base, stack.url) == 4401
    assert close_code(base + "?ticket=nonsense", stack.url) == 4403
    _, body = ticket(stack, users["op"], vm, "serial")
    with connect(body["url"], additional_headers={"Origin": stack.url}, open_timeout=10):
        pass
    assert close_code(body["url"], stack.url) == 4403, "a ticket works once"
    # A serial ticket is no good for VNC, nor a ticket for another VM.
    _, serial = ticket(stack, users["op"], vm, "serial")
    assert not vnc_reachable(websockify, serial["ticket"])
    other = f"{stack.ws_url}/ws/vms/00000000-0000-0000-0000-000000000001/serial/?ticket={serial['ticket']}"
    assert close_code(other, stack.url) == 4403
    # The outsider cannot even get a ticket for a VM of another project.
    status, body = ticket(stack, users["out"], vm, "serial")
    assert status == 404 and "paneltest" not in json.dumps(body)


def test_it_shows_a_viewer_the_console_but_drops_their_keystrokes(stack, world):
    vm, users = world["vm"], world["users"]
    status, body = ticket(stack, users["view"], vm, "serial")
    assert status == 200 and body["view_only"]
    with connect(body["url"], additional_headers={"Origin": stack.url}, open_timeout=10) as ws:
        ws_read_until(ws, b"view only", 10)
        ws.send(b"echo viewer-$((5*5))\r")
        with pytest.raises(AssertionError):
            ws_read_until(ws, b"viewer-25", 3)
    # The operator's session on the same console shows nothing of it either.
    _, body = ticket(stack, users["op"], vm, "serial")
    with connect(body["url"], additional_headers={"Origin": stack.url}, open_timeout=10) as ws:
        ws.send(b"\r")
        out = ws_read_until(ws, b"guest# ", 30)
        assert b"viewer-25" not in out


def security_types(websockify: str, token: str) -> list[int]:
    """Do the first steps of RFB 3.8 and return the security types the VNC server offers."""
    with connect(f"{websockify}/?token={token}", subprotocols=["binary"], open_timeout=10) as ws:
        assert ws.recv(timeout=10).startswith(b"RFB 003.008")
        ws.send(b"RFB 003.008\n")
        data = ws.recv(timeout=10)
        return list(data[1 : 1 + data[0]])


def test_it_protects_vnc_with_a_password_that_only_the_console_client_gets(
    stack, world, client, panel_test_guest
):
    from vms import services as vm_services

    op, vm = world["users"]["op"], world["vm"]
    _, body = ticket(stack, op, vm, "vnc")
    assert "password" not in body
    assert security_types(stack.websockify_url, body["ticket"]) == [1]  # None
    # A running transient VM started without a password cannot get one.
    with pytest.raises(services.ServiceError, match="started without a password"):
        vm_services.set_vnc_password(vm, "s3cr3tpw", actor=Actor(op))

    # A defined VM: the password is set while it is off and guards the display once started.
    info = hypervisor.define_domain(LOCAL_URI, guest_spec(panel_test_guest, vnc=True))
    try:
        defined = sync_domain(vm.host, info)
        defined.project = vm.project
        defined.save()
        with pytest.raises(services.ServiceError, match="6 to 8"):
            vm_services.set_vnc_password(defined, "abc", actor=Actor(op))
        assert vm_services.set_vnc_password(defined, "s3cr3tpw", actor=Actor(op)) is True
        defined = sync_domain(vm.host, hypervisor.start_domain(LOCAL_URI, info.uuid))
        _, body = ticket(stack, op, defined, "vnc")
        assert body["password"] == "s3cr3tpw"
        assert security_types(stack.websockify_url, body["ticket"]) == [2]  # VNC authentication

        client.force_login(op)
        page = client.get(f"/vms/{defined.pk}/").content.decode()
        assert "s3cr3tpw" not in page
        assert "s3cr3tpw" not in json.dumps(list(AuditEvent.objects.values()), default=str)
    finally:
        hypervisor.undefine_domain(LOCAL_URI, info.uuid)


def test_it_lets_a_second_session_take_the_serial_console_over_with_a_notice(stack, world):
    op, vm = world["users"]["op"], world["vm"]
    _, first_ticket = ticket(stack, op, vm, "serial")
    with connect(
        first_ticket["url"], additional_headers={"Origin": stack.url}, open_timeout=10
    ) as first:
        first.send(b"\r")
        ws_read_until(first, b"guest# ", 30)
        _, second_ticket = ticket(stack, op, vm, "serial")
        with connect(
            second_ticket["url"], additional_headers={"Origin": stack.url}, open_timeout=10
        ) as second:
            notice = ws_read_until(first, b"another session took it over", 10)
            assert b"console closed" in notice
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    first.recv(timeout=10)
            assert closed.value.rcvd.code == 4409
            second.send(b"echo still-$((2*21))\r")
            assert b"still-42" in ws_read_until(second, b"still-42", 15)


def test_it_lets_a_viewer_watch_vnc_only_through_the_filtering_proxy(stack, world):
    import struct

    view, vm = world["users"]["view"], world["vm"]
    status, body = ticket(stack, view, vm, "vnc")
    assert status == 200 and body["view_only"]
    assert "/vnc-view/" in body["url"]
    # websockify refuses a viewer's ticket outright.
    assert not vnc_reachable(stack.websockify_url, body["ticket"])
    _, body = ticket(stack, view, vm, "vnc")
    with connect(
        body["url"],
        additional_headers={"Origin": stack.url},
        subprotocols=["binary"],
        open_timeout=10,
        max_size=None,
    ) as ws:
        buf = b""

        def read(n: int) -> bytes:
            nonlocal buf
            while len(buf) < n:
                buf += ws.recv(timeout=10)
            out, buf = buf[:n], buf[n:]
            return out

        assert read(12).startswith(b"RFB 003.008")
        ws.send(b"RFB 003.008\n")
        count = read(1)[0]
        assert 1 in read(count)
        ws.send(b"\x01")
        assert read(4) == b"\x00\x00\x00\x00"
        ws.send(b"\x01")
        width, height = struct.unpack(">HH", read(4))
        read(16)
        read(struct.unpack(">I", read(4))[0])
        # Input is swallowed, the session goes on, and the screen still arrives.
        ws.send(struct.pack(">BBxxI", 4, 1, 0x61) + struct.pack(">BBHH", 5, 1, 5, 5))
        ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        assert read(1) == b"\x00"  # FramebufferUpdate


def test_it_refuses_a_ticket_presented_by_another_logged_in_user(stack, world, client):
    op, out, vm = world["users"]["op"], world["users"]["out"], world["vm"]
    _, body = ticket(stack, op, vm, "serial")
    client.force_login(out)
    sessionid = client.cookies["sessionid"].value
    headers = {"Origin": stack.url, "Cookie": f"sessionid={sessionid}"}
    with connect(body["url"], additional_headers=headers, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4403
    assert not AuditEvent.objects.filter(action="console.serial.open").exists()
