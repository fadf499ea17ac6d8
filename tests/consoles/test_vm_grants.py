"""A grant on one VM alone, on the real libvirtd's tiny guest through the running panel:
a console-only role lets its holder see that VM (and no other of the project), open its
serial console and type into it, and nothing else (power: 403)."""

from __future__ import annotations

import contextlib
import json
import uuid
from urllib.request import Request, urlopen

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from panel import hypervisor, services
from panel.actors import Actor
from panel.identity import access
from panel.models import AuditEvent, Host
from tests.conftest import LOCAL_URI, guest_spec
from tests.stack import open_ws, ws_read_until
from vms.models import VirtualMachine
from vms.services import lifecycle, sync_domain

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(180)]


@pytest.fixture
def world(transactional_db, django_user_model, panel_test_guest):
    """The running tiny guest and another VM row in alpha; a console-only role granted on
    the guest alone to "desk" (in no project) and to the group "night-shift"."""
    admin = django_user_model.objects.create_superuser("root", "", "root-pass-3k")
    alpha = services.create_project(name="alpha", actor=Actor(admin))
    host = Host.objects.create(name="local", uri=LOCAL_URI, state="up")
    info = hypervisor.create_transient(
        LOCAL_URI, guest_spec(panel_test_guest, cmdline="console=tty0 console=ttyS0")
    )
    vm = sync_domain(host, info)
    vm.project = alpha
    vm.save()
    other = VirtualMachine.objects.create(
        id=uuid.uuid4(), name="other-vm", host=host, project=alpha, state="shutoff"
    )
    role = access.create_role(
        name="console-only",
        privileges=["console", "console_input"],
        actor=Actor(admin),
    )
    desk = django_user_model.objects.create_user("desk", "", "desk-pass-8Kq")
    night = django_user_model.objects.create_user("night", "", "night-pass-8Kq")
    group = access.save_group(None, name="night-shift", members=[night], actor=Actor(admin))
    for grantee in ({"user": desk}, {"group": group}):
        access.add_grant(alpha, role=role.name, vm=vm, actor=Actor(admin), **grantee)
    try:
        yield {
            "vm": vm,
            "other": other,
            "desk": desk,
            "night": night,
            "group": group,
            "admin": admin,
        }
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, info.uuid)


def call(stack, user, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    token, _ = Token.objects.get_or_create(user=user)
    request = Request(
        f"{stack.url}/api/v1/{path}",
        data=json.dumps(body or {}).encode() if method != "GET" else None,
        headers={"Authorization": f"Token {token.key}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except Exception as exc:  # urllib raises HTTPError for 4xx
        return exc.code, json.loads(exc.read() or b"{}")  # type: ignore[attr-defined]


def test_a_console_grant_on_one_vm_opens_its_console_and_nothing_else(stack, world):
    vm, desk = world["vm"], world["desk"]

    status, listing = call(stack, desk, "GET", "vms/")
    assert status == 200
    assert [row["name"] for row in listing["results"]] == [vm.name]
    assert call(stack, desk, "GET", f"vms/{world['other'].pk}/")[0] == 404
    status, body = call(stack, desk, "POST", f"vms/{vm.pk}/console/", {"type": "serial"})
    assert status == 200 and not body["view_only"]
    with connect(body["url"], additional_headers={"Origin": stack.url}, open_timeout=10) as ws:
        ws.send(b"\r")
        ws_read_until(ws, b"guest# ", 30)
        ws.send(b"echo granted-$((6*7))\r")
        assert b"granted-42" in ws_read_until(ws, b"granted-42", 15)
    assert AuditEvent.objects.filter(action="console.serial.open", username="desk").exists()

    assert call(stack, desk, "POST", f"vms/{vm.pk}/shutdown/")[0] == 403
    assert call(stack, desk, "POST", f"vms/{vm.pk}/force-off/")[0] == 403
    assert str(hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state) == "running"


def test_a_group_grant_reaches_the_groups_members_until_they_leave_it(stack, world):
    vm, night = world["vm"], world["night"]

    status, body = call(stack, night, "POST", f"vms/{vm.pk}/console/", {"type": "serial"})
    assert status == 200 and not body["view_only"]
    access.save_group(world["group"], name="night-shift", members=[], actor=Actor(world["admin"]))

    assert call(stack, night, "POST", f"vms/{vm.pk}/console/", {"type": "serial"})[0] == 404
    assert call(stack, night, "GET", "vms/")[1]["results"] == []


def test_the_vm_page_of_a_vm_granted_alone_follows_it_live(stack, world):
    vm, desk = world["vm"], world["desk"]
    login = Client()
    login.force_login(desk)
    sessionid = login.cookies["sessionid"].value

    with open_ws(stack, f"/ws/vms/{vm.pk}/", sessionid) as ws:
        ws_read_until(ws, b'"running"', 15)
        lifecycle.perform_action(vm, "suspend", actor=Actor(world["admin"]))
        assert b'"paused"' in ws_read_until(ws, b'"paused"', 30)
