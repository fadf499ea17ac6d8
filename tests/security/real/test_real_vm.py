"""On the real libvirtd with the tiny guest: a viewer cannot act on a running VM, and a
VNC password set on a VM never shows in a page, an API answer or the XML the panel
shows; console tickets work once and expire."""

from __future__ import annotations

import time

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.choices import AuditResult
from panel.console_tokens import KEY_PREFIX, TicketTokens
from panel.models import AuditEvent, Job
from tests.conftest import LOCAL_URI
from tests.security.routes import fill, http_routes
from tests.security.test_get_and_csrf import READABLE
from vms import consoles
from vms import services as vm_services

pytestmark = pytest.mark.libvirt

VNC_PASSWORD = "Qz7wKp2m"


def domain_state(vm) -> str:
    return str(hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state)


def test_it_refuses_a_viewer_every_action_on_a_running_vm(make_vm, client_for, api_for):
    vm = make_vm(running=True)
    page, api = client_for("viewer"), api_for("viewer")
    running = domain_state(vm)
    answers = {
        "page force-off": page.post(f"/vms/{vm.pk}/force-off/").status_code,
        "page shutdown": page.post(f"/vms/{vm.pk}/shutdown/").status_code,
        "page delete": page.post(f"/vms/{vm.pk}/delete/").status_code,
        "page snapshot": page.post(f"/vms/{vm.pk}/snapshots/create/", {"name": "s1"}).status_code,
        "page migrate": page.post(f"/vms/{vm.pk}/migrate/", {"target_host": 1}).status_code,
        "api force-off": api.post(f"/api/v1/vms/{vm.pk}/force-off/").status_code,
        "api delete": api.delete(f"/api/v1/vms/{vm.pk}/").status_code,
        "api snapshot": api.post(
            f"/api/v1/vms/{vm.pk}/snapshots/", {"name": "s1"}, format="json"
        ).status_code,
        "api migrate": api.post(
            f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": 1}, format="json"
        ).status_code,
    }
    bulk = page.post("/vms/bulk/", {"action": "force-off", "vm": [str(vm.pk)]}, follow=True)

    assert answers == {what: 403 for what in answers}
    assert f"{vm.name}: " in bulk.content.decode()  # the bulk page names the refusal
    assert domain_state(vm) == running == "running"
    assert not Job.objects.filter(target__contains=str(vm.pk)).exists()
    assert not AuditEvent.objects.filter(
        target__contains=vm.name, result=AuditResult.SUCCESS
    ).exists()


@pytest.fixture
def vm_with_vnc_password(make_vm, admin):
    vm = make_vm(vnc=True)
    # Set while shut off: qemu takes a password for a display only from its start.
    vm_services.set_vnc_password(vm, VNC_PASSWORD, actor=Actor(admin))
    vm_services.sync_domain(vm.host, hypervisor.start_domain(LOCAL_URI, str(vm.pk)))
    vm = vm_services.refresh_details(type(vm).objects.select_related("host").get(pk=vm.pk))
    assert hypervisor.vnc_password(LOCAL_URI, str(vm.pk)) == VNC_PASSWORD
    return vm


def test_it_shows_a_vnc_password_nowhere(vm_with_vnc_password, admin, client_for, api_for):
    vm = vm_with_vnc_password
    objects = {"vm": vm.pk, "host": vm.host_id, "project": vm.project_id, "user": admin.pk}
    clients = {"page": client_for("admin"), "api": api_for("admin")}
    shown = []
    swept = 0
    for route in http_routes():
        if route.name not in READABLE or route.name in ("api_schema", "api_docs"):
            continue
        try:
            paths = fill(route, objects.__getitem__)
        except KeyError:
            continue  # a route about other kinds of objects
        for path in paths:
            response = clients["api" if route.api else "page"].get(path)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            swept += 1
            if VNC_PASSWORD.encode() in body:
                shown.append(path)

    assert shown == []
    assert swept > 20
    xml_page = clients["page"].get(f"/vms/{vm.pk}/xml/").content.decode()
    assert "<graphics" in xml_page.replace("&lt;", "<")
    assert VNC_PASSWORD not in type(vm).objects.get(pk=vm.pk).xml


def test_it_lets_a_console_ticket_work_once_and_expire(vm_with_vnc_password, admin, settings):
    vm = vm_with_vnc_password
    serial = consoles.issue_ticket(vm, Actor(admin), "serial", ws_base="ws://testserver")
    vnc = consoles.issue_ticket(vm, Actor(admin), "vnc", ws_base="ws://testserver")
    plugin = TicketTokens(settings.REDIS_URL)

    assert consoles.take_ticket(serial["ticket"])["type"] == "serial"
    assert consoles.take_ticket(serial["ticket"]) is None
    assert plugin.lookup(vnc["ticket"]) is not None
    assert plugin.lookup(vnc["ticket"]) is None
    # A serial ticket reaches nothing through websockify.
    other = consoles.issue_ticket(vm, Actor(admin), "serial", ws_base="ws://testserver")
    assert plugin.lookup(other["ticket"]) is None

    # And a ticket expires.
    ticket = consoles.issue_ticket(vm, Actor(admin), "serial", ws_base="ws://testserver")["ticket"]
    store = consoles._redis()

    assert 0 < store.ttl(KEY_PREFIX + ticket) <= consoles.TICKET_SECONDS <= 60
    # Its time is up (as Redis ends it when the TTL passes): nothing to take any more.
    store.pexpire(KEY_PREFIX + ticket, 1)
    time.sleep(0.05)
    assert consoles.take_ticket(ticket) is None


def test_it_gives_the_vnc_password_only_to_those_with_full_console_use(
    vm_with_vnc_password, api_for
):
    vm = vm_with_vnc_password
    url = f"/api/v1/vms/{vm.pk}/console/"

    view = api_for("viewer").post(url, {"type": "vnc"}, format="json")
    full = api_for("operator").post(url, {"type": "vnc"}, format="json")
    serial = api_for("viewer").post(url, {"type": "serial"}, format="json")

    # The viewer watches through the panel's proxy, which answers the display's challenge
    # itself: the viewer is never given the password.
    assert view.status_code == 200 and view.json()["view_only"] is True
    assert "/vnc-view/" in view.json()["url"] and "password" not in view.json()
    assert VNC_PASSWORD not in view.content.decode()
    assert full.status_code == 200 and full.json()["password"] == VNC_PASSWORD
    # The viewer still watches the serial console, read-only.
    assert serial.status_code == 200 and serial.json()["view_only"] is True
