"""The Content-Security-Policy in headless Chromium: the key pages load with no violation
(no inline script or style anywhere, not even one a library injects) and still work:
the serial console runs a command, the VNC console connects, the graphs draw, a
confirmation still asks first."""

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

# Collects every violation the page reports, from before its first script runs.
LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def running_vm(transactional_db, panel_test_guest, admin_user):
    host = Host.objects.create(name="local", uri=LOCAL_URI, state="up", domain_type="qemu")
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


@pytest.fixture
def watched(page, stack, running_vm):
    """The page, logged in as admin, with every CSP violation and console error kept."""
    errors: list[str] = []
    page.add_init_script(LISTEN)
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if "Content Security Policy" in msg.text or "Refused to" in msg.text
            else None
        ),
    )
    page.goto(stack.url + "/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.errors = errors
    return page


def violations(page) -> list[str]:
    return page.evaluate("window.__csp") + page.errors


def test_it_loads_the_key_pages_without_a_csp_violation(watched, stack, running_vm):
    page = watched
    host = running_vm.host
    found = {}
    for path in (
        "/",
        "/vms/",
        f"/vms/{running_vm.pk}/",
        "/vms/new/",
        "/storage/",
        "/networks/",
        f"/hosts/{host.pk}/",
        f"/projects/{running_vm.project_id}/",
        "/jobs/",
        "/audit/",
    ):
        page.goto(stack.url + path)
        page.wait_for_load_state("networkidle")
        if v := violations(page):
            found[path] = v
        page.errors.clear()
    # Confirmations moved from onsubmit="" to data-confirm still ask first.
    page.goto(f"{stack.url}/hosts/{host.pk}/")
    asked: list[str] = []

    def dismiss(dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.get_by_role("button", name="Remove").click()
    page.wait_for_timeout(300)

    assert found == {}
    assert asked == [f"Remove {host.name} from the panel? Its VMs keep running."]
    assert Host.objects.filter(pk=host.pk).exists()
    assert violations(page) == []


def test_it_runs_both_consoles_under_the_policy(watched, stack, running_vm):
    page = watched
    page.goto(f"{stack.url}/vms/{running_vm.pk}/console/serial/")
    expect(page.locator("#console-status")).to_have_text("connected", timeout=15_000)
    page.wait_for_function(
        "() => { const b = window.panelTerminal.buffer.active; for (let i = 0; i < b.length; i++)"
        " { if (b.getLine(i).translateToString(true).includes('guest#')) return true; } return false; }",
        timeout=30_000,
    )
    page.locator("#terminal").click()
    page.keyboard.type("echo csp-$((6*7))")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const b = window.panelTerminal.buffer.active; for (let i = 0; i < b.length; i++)"
        " { if (b.getLine(i).translateToString(true).trim() === 'csp-42') return true; }"
        " return false; }",
        timeout=15_000,
    )
    # The terminal keeps its size from panel.css, now that the page has no <style>.
    height = page.evaluate("document.querySelector('#terminal').getBoundingClientRect().height")

    # xterm.js's own <style> (its theme) applies: light text on the black terminal.
    color = page.evaluate("getComputedStyle(document.querySelector('.xterm-rows')).color")

    assert height > 200
    assert color == "rgb(255, 255, 255)"
    assert violations(page) == []

    page.goto(f"{stack.url}/vms/{running_vm.pk}/console/vnc/")
    expect(page.locator("#console-status")).to_have_text("connected", timeout=20_000)
    expect(page.locator("#screen canvas")).to_be_visible()
    assert violations(page) == []
