"""Attacks on the consoles and the websockets, each made as the hostile user makes it,
against the running panel, websockify and the tiny guest on the real libvirtd.

- A viewer types into a VM through the view-only VNC session, speaking RFB 3.3, 3.7 or
  3.8. A 3.3 client used to move the handshake out of step with the panel's filter, so
  that a message the filter read as harmless was, for qemu, a run of key events; a 3.7
  or 3.8 client asked for the display exclusively, and qemu disconnected everyone else. The panel
  now speaks RFB to both sides itself: one version and security type towards the
  viewer, its own shared session towards qemu, and of the viewer's messages only pixel
  format, encodings and update requests go on. The guest proves it: a shell reading
  the VGA console's keyboard never sees the viewer's command, while an operator's
  keys typed the same way do arrive.
- Someone who can write to Redis plants a console ticket there. Tickets are signed
  with the secret key and bound to their own key; websockify and the panel refuse any
  other.
- A member opens the graphical console of a VM on another host. Its VNC server
  listens on that host's loopback address, so the panel would have connected to
  whatever listens on that port on its own machine; it now refuses, saying why.
- A viewer opens the serial console while an operator works in it. It used to take the
  console over; now the viewer watches a read-only copy and the operator goes on.
- A user logged out, disabled or removed from the project keeps a page, a job, the
  serial console or a VNC view open and goes on watching. Each websocket now closes
  within seconds of the change.
"""

from __future__ import annotations

import contextlib
import json
import string
import struct
import time
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core import signing
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from panel import hypervisor, services
from panel.actors import Actor
from panel.choices import HostState, JobState
from panel.console_tokens import KEY_PREFIX
from panel.models import Host, Job
from tests.conftest import LOCAL_URI, guest_spec
from tests.stack import ws_read_until
from vms.models import VirtualMachine
from vms.services import sync_domain

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]

XK_RETURN, XK_SHIFT_L = 0xFF0D, 0xFFE1
SHIFTED = set(string.ascii_uppercase) | set('~!@#$%^&*()_+{}|:"<>?')


# --- the guest, observed from its serial console --------------------------------------------


class GuestShell:
    """The guest's serial shell, held by the test as an admin on the host would."""

    def __init__(self, uuid: str) -> None:
        self.stream = hypervisor.open_console(LOCAL_URI, uuid)
        self.stream.send(b"\r")
        self.stream.read_until(b"guest# ", 60)

    def run(self, command: str, timeout: float = 30) -> str:
        """Run command; its output (the marker's arithmetic keeps the echoed command line
        from matching the end of the output)."""
        marker = uuidlib.uuid4().hex[:8]
        start = len(self.stream.output())
        self.stream.send(f"{command}\recho {marker}-$((40+2))\r".encode())
        out = self.stream.read_until(f"{marker}-42".encode(), timeout, start=start)
        return out[start:].decode(errors="replace")

    def has(self, path: str) -> bool:
        return "is-there-7" in self.run(f"test -e {path} && echo is-there-$((3+4))")

    def close(self) -> None:
        self.stream.close()


def key_events(text: str) -> bytes:
    """RFB KeyEvents typing text on a US keyboard ("\\n" is Return)."""
    out = b""
    for ch in text:
        sym = XK_RETURN if ch == "\n" else ord(ch)
        shift = ch in SHIFTED
        if shift:
            out += struct.pack(">BBxxI", 4, 1, XK_SHIFT_L)
        out += struct.pack(">BBxxI", 4, 1, sym) + struct.pack(">BBxxI", 4, 0, sym)
        if shift:
            out += struct.pack(">BBxxI", 4, 0, XK_SHIFT_L)
    return out


def update_request(width: int, height: int) -> bytes:
    return struct.pack(">BBHHHH", 3, 0, 0, 0, width, height)


class Rfb:
    """An RFB client over a websocket: websockify's, or the panel's view-only proxy."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.buffer = b""
        self.width = self.height = 0

    def read(self, n: int, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < n:
            self.buffer += self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def handshake(self, minor: int, *, shared: bool = True) -> None:
        """The client's part of RFB 3.<minor> with security None, up to ServerInit."""
        assert self.read(12).startswith(b"RFB 003.")
        self.ws.send(b"RFB 003.%03d\n" % minor)
        if minor == 3:
            assert struct.unpack(">I", self.read(4)) == (1,)  # None, the server's choice
        else:
            offered = self.read(self.read(1)[0])
            assert 1 in offered, offered
            self.ws.send(b"\x01")
            if minor == 8:
                assert self.read(4) == bytes(4)  # SecurityResult: OK
        self.ws.send(b"\x01" if shared else b"\x00")  # ClientInit
        head = self.read(24)
        self.width, self.height = struct.unpack(">HH", head[:4])
        self.read(struct.unpack(">I", head[20:24])[0])

    def type(self, text: str) -> None:
        self.ws.send(key_events(text))


def rfb_socket(url: str, headers: dict[str, str] | None = None) -> Any:
    return connect(
        url,
        additional_headers=headers or {},
        subprotocols=["binary"],
        open_timeout=10,
        max_size=None,
    )


def smuggled_keys(text: str) -> bytes:
    """What a hostile 3.3 client sends after ClientInit: a SetEncodings that, read one byte
    late (as a filter that took the 3.3 ClientInit for a 3.8 security choice reads it), is
    another SetEncodings whose 256 "encodings" are these key events for qemu, then
    clipboard text that brings both readings back in step."""
    keys = key_events(text)
    # Read in step: SetEncodings of 1 encoding (Raw), the keys, a ClientCutText.
    # Read one byte late: SetEncodings (type 2 in the padding byte) counting 0x0100.
    head = struct.pack(">BBBBi", 2, 2, 0, 1, 0)
    filler = 1 + 4 + 4 * 256 - len(head) - len(keys) - 8  # up to the late reading's end
    assert filler >= 0
    cut = struct.pack(">Bxxxi", 6, filler) + b"x" * filler
    return head + keys + cut


def ticket(who: Any, vm: VirtualMachine, kind: str) -> dict[str, Any]:
    answer = who.api("post", f"vms/{vm.pk}/console/", json={"type": kind})
    assert answer.status_code == 200, answer.text
    return answer.json()


def path_of(url: str) -> str:
    """The path (and query) of a websocket URL the panel handed out."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def closed_code(ws: Any, timeout: float) -> int | None:
    """The close code once the server closes ws within timeout (None: still open)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    return None


@pytest.fixture
def vga_vm(make_vm) -> Iterator[tuple[VirtualMachine, GuestShell]]:
    """alpha's running tiny guest with a VNC display, and a shell in it that reads the
    VGA console's keyboard (tty1): what a VNC client types lands there."""
    vm = make_vm(running=True, vnc=True, cmdline="console=tty0 console=ttyS0")
    shell = GuestShell(str(vm.pk))
    try:
        shell.run("setsid sh -c 'while true; do sh </dev/tty1 >/dev/tty1 2>&1; done' &")
        yield vm, shell
    finally:
        shell.close()


# --- VNC: a viewer types ----------------------------------------------------------------------


@pytest.mark.parametrize("minor", [3, 7, 8])
def test_it_lets_a_vnc_viewer_neither_type_nor_disconnect_others_in_any_rfb_dialect(
    attacker, vga_vm, minor
):
    vm, guest = vga_vm
    operator, viewer = attacker("operator"), attacker("viewer")

    # The operator's full session through websockify: keys typed in VNC reach the guest.
    full = ticket(operator, vm, "vnc")
    with rfb_socket(full["url"]) as operator_ws:
        operator_vnc = Rfb(operator_ws)
        operator_vnc.handshake(8)
        operator_vnc.type("echo operator-1 > /tmp/operator\n")
        assert wait_for_file(guest, "/tmp/operator"), "an operator's VNC keys reach the guest"

        view = ticket(viewer, vm, "vnc")
        assert view["view_only"] and "/vnc-view/" in view["url"]
        headers = {"Origin": viewer.stack.url, "Cookie": f"sessionid={viewer.sessionid}"}
        with rfb_socket(view["url"], headers) as viewer_ws:
            viewer_vnc = Rfb(viewer_ws)
            if minor == 3:
                # A 3.3 client's handshake is shorter: the filter used to read it one byte
                # late, and let key events through as encodings.
                viewer_vnc.handshake(minor)
                viewer_ws.send(smuggled_keys("echo pwned > /tmp/pwned\n"))
            else:
                # Exclusive: qemu disconnects every other client of the display.
                viewer_vnc.handshake(minor, shared=False)
            viewer_vnc.type("echo typed > /tmp/typed\n")
            viewer_ws.send(update_request(viewer_vnc.width, viewer_vnc.height))
            assert viewer_vnc.read(1) == b"\x00", "the viewer gets the screen"

            # The operator's session is still there, and types after the viewer did:
            # once the operator's line ran, any line of the viewer's had run before it.
            try:
                operator_vnc.type("echo operator-2 > /tmp/after\n")
                operator_still_types = wait_for_file(guest, "/tmp/after")
            except ConnectionClosed:
                operator_still_types = False
    outcome = {
        "the operator's session survived the viewer's": operator_still_types,
        "keys smuggled past the filter reached the guest": guest.has("/tmp/pwned"),
        "keys the viewer typed reached the guest": guest.has("/tmp/typed"),
    }
    assert outcome == {
        "the operator's session survived the viewer's": True,
        "keys smuggled past the filter reached the guest": False,
        "keys the viewer typed reached the guest": False,
    }


def wait_for_file(guest: GuestShell, path: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if guest.has(path):
            return True
        time.sleep(0.2)
    return False


def test_it_shows_a_viewer_a_passworded_display_without_handing_out_its_password(
    attacker, make_vm, admin
):
    from vms import services as vm_services

    password = "Vw9qLm2x"
    vm = make_vm(vnc=True)
    vm_services.set_vnc_password(vm, password, actor=Actor(admin))
    sync_domain(vm.host, hypervisor.start_domain(LOCAL_URI, str(vm.pk)))
    viewer = attacker("viewer")

    view = viewer.api("post", f"vms/{vm.pk}/console/", json={"type": "vnc"})
    assert view.status_code == 200, view.text
    assert password not in view.text and "password" not in view.json()
    headers = {"Origin": viewer.stack.url, "Cookie": f"sessionid={viewer.sessionid}"}
    with rfb_socket(view.json()["url"], headers) as ws:
        vnc = Rfb(ws)
        vnc.handshake(8)  # security None: the panel answered the display's challenge
        ws.send(update_request(vnc.width, vnc.height))
        assert vnc.read(1) == b"\x00"


# --- tickets planted in Redis ---------------------------------------------------------------


def test_it_refuses_console_tickets_that_the_panel_did_not_sign(attacker, vga_vm):
    vm, _guest = vga_vm
    outsider = attacker("outsider")
    display = next(g for g in hypervisor.get_domain(LOCAL_URI, str(vm.pk)).graphics)
    store = redis.Redis.from_url(settings.REDIS_URL)
    plain = {"type": "vnc", "user": outsider.user.pk, "vm": str(vm.pk), "view_only": False}
    plain.update(host="127.0.0.1", port=display.port)
    planted = {
        "unsigned": json.dumps(plain),
        "signed with another key": signing.dumps(
            {**plain, "ticket": "forged-2"}, key="not-the-panels-key", salt="panel.console-ticket"
        ),
    }
    for token, value in zip(("forged-1", "forged-2"), planted.values(), strict=True):
        store.set(KEY_PREFIX + token, value, ex=30)
    # A real ticket's value moved to a key of the attacker's choosing.
    real = ticket(attacker("operator"), vm, "vnc")["ticket"]
    store.set(KEY_PREFIX + "forged-3", store.getdel(KEY_PREFIX + real), ex=30)
    # A serial ticket for the panel's own websocket.
    serial = {"type": "serial", "user": outsider.user.pk, "vm": str(vm.pk), "view_only": False}
    store.set(KEY_PREFIX + "forged-4", json.dumps(serial), ex=30)

    reached = {}
    for token in ("forged-1", "forged-2", "forged-3"):
        reached[token] = vnc_greets(f"{outsider.stack.websockify_url}/?token={token}")
    with outsider.ws(f"/ws/vms/{vm.pk}/serial/?ticket=forged-4") as ws:
        code = closed_code(ws, 10)

    assert reached == {"forged-1": False, "forged-2": False, "forged-3": False}
    assert code == 4403
    # A ticket the panel issued still works.
    fresh = ticket(attacker("operator"), vm, "vnc")["ticket"]
    assert vnc_greets(f"{outsider.stack.websockify_url}/?token={fresh}")


def vnc_greets(url: str) -> bool:
    """Whether websockify relays a VNC greeting for this URL (a refused token gets none)."""
    try:
        with rfb_socket(url) as ws:
            return ws.recv(timeout=5).startswith(b"RFB")
    except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
        return False


# --- a VM on another host -------------------------------------------------------------------


def test_it_refuses_a_graphical_console_on_another_host_saying_why(
    attacker, people, second_host_uri, panel_test_guest
):
    host = Host.objects.create(
        name="second", uri=second_host_uri, state=HostState.UP, domain_type="qemu"
    )
    info = hypervisor.create_transient(second_host_uri, guest_spec(panel_test_guest, vnc=True))
    try:
        vm = sync_domain(host, info)
        VirtualMachine.objects.filter(pk=vm.pk).update(project=people.alpha, owner=people["member"])
        vm = VirtualMachine.objects.get(pk=vm.pk)
        member = attacker("member")

        vnc = member.api("post", f"vms/{vm.pk}/console/", json={"type": "vnc"})
        serial = member.api("post", f"vms/{vm.pk}/console/", json={"type": "serial"})
    finally:
        hypervisor.destroy_domain(second_host_uri, info.uuid)

    assert vnc.status_code == 409, vnc.text
    detail = vnc.json()["detail"]
    assert "second" in detail and "serial console" in detail, detail
    assert "url" not in vnc.json()
    assert serial.status_code == 200  # the serial console goes through libvirt: it works


# --- the serial console: a viewer and an operator --------------------------------------------


def test_it_gives_a_viewer_a_read_only_copy_of_the_operators_serial_console(attacker, make_vm):
    vm = make_vm(running=True)
    operator, viewer = attacker("operator"), attacker("viewer")

    with operator.ws(path_of(ticket(operator, vm, "serial")["url"])) as op:
        op.send(b"\r")
        ws_read_until(op, b"guest# ", 60)
        with viewer.ws(path_of(ticket(viewer, vm, "serial")["url"])) as view:
            ws_read_until(view, b"view only", 10)
            op.send(b"echo mirror-$((6*7))\r")
            assert b"mirror-42" in ws_read_until(op, b"mirror-42")
            assert b"mirror-42" in ws_read_until(view, b"mirror-42"), "the viewer sees the output"
            view.send(b"echo viewer-$((5*5))\r")
            op.send(b"echo still-$((2*21))\r")
            seen = ws_read_until(op, b"still-42")
            assert b"viewer-25" not in seen, "the viewer's keys reached the guest"
            assert closed_code(op, 1) is None, "the operator's session was taken over"

    # A viewer alone holds the console; an operator who comes takes it over, and the
    # viewer goes on watching their session.
    with viewer.ws(path_of(ticket(viewer, vm, "serial")["url"])) as view:
        ws_read_until(view, b"view only", 10)
        with operator.ws(path_of(ticket(operator, vm, "serial")["url"])) as op:
            op.send(b"echo again-$((7*6))\r")
            assert b"again-42" in ws_read_until(op, b"again-42")
            assert b"again-42" in ws_read_until(view, b"again-42")
            assert closed_code(view, 1) is None


def test_it_stops_an_operator_typing_once_they_become_a_viewer(attacker, make_vm, admin, people):
    vm = make_vm(running=True)
    operator = attacker("operator")
    with operator.ws(path_of(ticket(operator, vm, "serial")["url"])) as op:
        op.send(b"\r")
        ws_read_until(op, b"guest# ", 60)
        with operator.ws(f"/ws/vms/{vm.pk}/") as page:
            page.recv(timeout=10)
            services.add_member(people.alpha, user=operator.user, role="viewer", actor=Actor(admin))
            assert closed_code(op, 30) == 4403
            assert closed_code(page, 2) is None, "a viewer still sees the VM's page"


# --- websockets outlive the access they were opened with -------------------------------------


def _open_everything(
    sockets: contextlib.ExitStack, who: Any, vm: VirtualMachine, job: Job
) -> dict[str, Any]:
    """who's websockets on vm and job, each shown open and in scope."""
    view = ticket(who, vm, "vnc")
    headers = {"Origin": who.stack.url, "Cookie": f"sessionid={who.sessionid}"}
    opened = {
        "vm page": sockets.enter_context(who.ws(f"/ws/vms/{vm.pk}/")),
        "vm list": sockets.enter_context(who.ws(f"/ws/vm-rows/?ids={vm.pk}")),
        "job": sockets.enter_context(who.ws(f"/ws/jobs/{job.pk}/")),
        "serial console": sockets.enter_context(who.ws(path_of(ticket(who, vm, "serial")["url"]))),
        "vnc view": sockets.enter_context(rfb_socket(view["url"], headers)),
    }
    Rfb(opened["vnc view"]).handshake(8)
    for name in ("vm page", "vm list", "job"):
        opened[name].recv(timeout=10)  # the snapshot
    ws_read_until(opened["serial console"], b"view only", 10)
    return opened


@pytest.fixture
def watched(make_vm, people) -> tuple[VirtualMachine, Job]:
    """alpha's running VM with a display, and a finished job of the project's."""
    vm = make_vm(running=True, vnc=True)
    job = Job.objects.create(
        kind="vm.start", state=JobState.SUCCEEDED, project=people.alpha, user=people["member"]
    )
    return vm, job


@pytest.mark.parametrize(
    ("change", "code"),
    [("logout", 4401), ("deactivation", 4401), ("membership removal", 4404)],
)
def test_it_closes_every_websocket_within_seconds_when_access_ends(
    attacker, watched, admin, people, change, code
):
    viewer = attacker("viewer")
    with contextlib.ExitStack() as sockets:
        opened = _open_everything(sockets, viewer, *watched)
        if change == "logout":
            assert viewer.post_form("/logout/").status_code == 302
        elif change == "deactivation":
            services.set_user_active(viewer.user, active=False, actor=Actor(admin))
        else:
            services.remove_member(people.alpha, user=viewer.user, actor=Actor(admin))
        codes = {name: closed_code(ws, 20) for name, ws in opened.items()}

    assert codes == {name: code for name in opened}


def test_it_closes_websockets_when_a_user_is_disabled_behind_the_panels_back(
    attacker, watched, django_user_model
):
    # Django's admin, a script or the database: no event; the periodic check notices.
    viewer = attacker("viewer")
    with contextlib.ExitStack() as sockets:
        opened = _open_everything(sockets, viewer, *watched)
        django_user_model.objects.filter(pk=viewer.user.pk).update(is_active=False)
        codes = {name: closed_code(ws, 30) for name, ws in opened.items()}

    assert codes == {name: 4401 for name in opened}
