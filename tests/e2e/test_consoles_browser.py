"""The console pages in headless Chromium: xterm.js on the serial console, noVNC on VNC."""

from __future__ import annotations

import contextlib

import pytest
from playwright.sync_api import expect

from panel import hypervisor, services
from panel.actors import Actor
from panel.models import Host
from tests.conftest import ADMIN_PASSWORD, LOCAL_URI, guest_spec
from vms.services import sync_domain

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(180)]


@pytest.fixture
def running_vm(transactional_db, panel_test_guest, admin_user):
    host = Host.objects.create(name="local", uri=LOCAL_URI, state="up")
    info = hypervisor.create_transient(
        LOCAL_URI, guest_spec(panel_test_guest, vnc=True, cmdline="console=tty0 console=ttyS0")
    )
    vm = sync_domain(host, info)
    vm.project = services.create_project(name="alpha", actor=Actor(admin_user))
    vm.save()
    try:
        yield vm
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, info.uuid)


def login(page, stack):
    page.goto(stack.url + "/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_it_runs_a_command_in_the_serial_console_page(page, stack, running_vm):
    login(page, stack)
    page.goto(f"{stack.url}/vms/{running_vm.pk}/")
    page.get_by_role("link", name="Serial console").click()
    expect(page.locator("#console-status")).to_have_text("connected", timeout=15_000)

    def screen() -> str:
        return page.evaluate(
            """() => { const b = window.panelTerminal.buffer.active; let out = [];
                for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
                return out.join("\\n"); }"""
        )

    page.wait_for_function(
        "() => { const b = window.panelTerminal.buffer.active; for (let i = 0; i < b.length; i++)"
        " { if (b.getLine(i).translateToString(true).includes('guest#')) return true; } return false; }",
        timeout=30_000,
    )
    page.locator("#terminal").click()
    page.keyboard.type("echo hello-$((6*7))")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const b = window.panelTerminal.buffer.active; for (let i = 0; i < b.length; i++)"
        " { const l = b.getLine(i).translateToString(true); if (l.trim() === 'hello-42') return true; }"
        " return false; }",
        timeout=15_000,
    )
    assert "hello-42" in screen()


def test_it_shows_the_guest_screen_in_the_vnc_page(page, stack, running_vm):
    login(page, stack)
    page.goto(f"{stack.url}/vms/{running_vm.pk}/console/vnc/")
    expect(page.locator("#console-status")).to_have_text("connected", timeout=20_000)
    canvas = page.locator("#screen canvas")
    expect(canvas).to_be_visible()
    # The guest prints its boot log on tty0: the framebuffer is not one flat colour.
    page.wait_for_function(
        """() => { const c = document.querySelector('#screen canvas');
            if (!c || !c.width) return false;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 4; i < d.length; i += 4 * 97) {
              if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
            }
            return false; }""",
        timeout=30_000,
    )
    page.screenshot(path="/tmp/e2e-vnc-console.png")


def test_it_shows_a_viewer_the_guest_screen_through_the_view_only_proxy(
    page, stack, running_vm, django_user_model, admin_user
):
    from django.test import Client

    viewer = django_user_model.objects.create_user("vera", "", "Quiet-harbor-23m")
    services.add_member(running_vm.project, user=viewer, role="viewer", actor=Actor(admin_user))
    login = Client()
    login.force_login(viewer)
    page.context.add_cookies(
        [{"name": "sessionid", "value": login.cookies["sessionid"].value, "url": stack.url}]
    )
    # noVNC speaks to the panel's proxy (RFB 3.8, security None), not to websockify.
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"{stack.url}/vms/{running_vm.pk}/console/vnc/")
    expect(page.locator("#console-status")).to_have_text("connected", timeout=20_000)
    page.wait_for_function(
        """() => { const c = document.querySelector('#screen canvas');
            if (!c || !c.width) return false;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 4; i < d.length; i += 4 * 97) {
              if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
            }
            return false; }""",
        timeout=30_000,
    )
    assert [url for url in sockets if "/vnc-view/" in url], sockets
    assert not [url for url in sockets if url.startswith(stack.websockify_url)], sockets
