"""In headless Chromium against the running stack, with the host watcher following the real
libvirtd: the VM list and a VM's page follow its state live, without reloading."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from panel import hypervisor
from panel.actors import Actor
from tests.browser import signed_in
from tests.conftest import LOCAL_URI
from vms import services as vm_services
from vms.models import VirtualMachine

pytestmark = [
    pytest.mark.browser,
    pytest.mark.stack,
    pytest.mark.libvirt,
    pytest.mark.timeout(180),
]


class Sockets:
    """The page's websockets and the frames each received (register before the page loads)."""

    def __init__(self, page) -> None:
        self.frames: list[tuple[str, str]] = []
        page.on("websocket", self._opened)

    def _opened(self, ws) -> None:
        ws.on("framereceived", lambda payload: self.frames.append((ws.url, str(payload))))

    def wait_for_snapshot(self, page, path: str, timeout: float = 15.0) -> None:
        """Until the socket at path has sent its first message: live.js is listening."""
        deadline = time.monotonic() + timeout
        while not any(url.endswith(path) for url, _ in self.frames):
            assert time.monotonic() < deadline, f"no message on {path}; got {self.frames}"
            page.wait_for_timeout(50)


def open_as(page, stack, user, path: str) -> Sockets:
    signed_in(page, stack, user)
    sockets = Sockets(page)
    page.goto(stack.url + path)
    return sockets


def elsewhere(fn, *args, **kwargs):
    """fn(*args, **kwargs) on a thread of its own, as a request or the watcher runs it.
    Playwright's sync API keeps an event loop in this thread, and events.publish() (through
    async_to_sync) may not send from a thread that has one."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def act(vm, action: str, actor) -> None:
    """What the VM's Start or Force off button does, done by actor."""
    fresh = VirtualMachine.objects.select_related("host", "project").get(pk=vm.pk)
    vm_services.perform_action(fresh, action, actor=Actor(actor))


def test_it_shows_the_vm_list_follow_the_vm_state_without_reloading(
    stack, transactional_db, watcher, make_vm, people, browser_page
):
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    vm = elsewhere(make_vm)
    admin = people["admin"]
    sockets = open_as(page, stack, admin, "/vms/")
    row = page.locator(f"tr[data-vm='{vm.pk}']")
    badge = row.locator("[data-vm-state]")
    expect(badge).to_have_text("shutoff")
    sockets.wait_for_snapshot(page, page.get_attribute("[data-vms-ws]", "data-vms-ws"))
    page.evaluate("window.__marker = 1")

    elsewhere(act, vm, "start", admin)

    expect(badge).to_have_text("running", timeout=5_000)
    expect(badge).to_have_class(re.compile(r"\bstate-running\b"))

    # Stopped outside the panel: the watcher notices, the page follows.
    hypervisor.destroy_domain(LOCAL_URI, str(vm.pk))

    expect(badge).to_have_text("shutoff", timeout=5_000)
    expect(badge).not_to_have_class(re.compile(r"\bstate-running\b"))
    assert page.evaluate("window.__marker") == 1, "the page reloaded"

    # The bulk form: tick the row, press Start; this one is a form post that comes back.
    row.get_by_role("checkbox").check()
    page.locator("#bulk").get_by_role("button", name="Start", exact=True).click()

    expect(page.locator(".alert-success")).to_have_text(f"Start: {vm.name}.")
    expect(page.locator(f"tr[data-vm='{vm.pk}'] [data-vm-state]")).to_have_text("running")
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "running"
    assert errors == []


def test_it_enables_the_vm_pages_buttons_as_the_state_changes(
    stack, transactional_db, watcher, make_vm, people, browser_page
):
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    vm = elsewhere(make_vm)
    # Details read just now: the page queues no refresh of them, whose arrival would
    # reload it (on purpose) and spoil the no-reload check below.
    vm = elsewhere(vm_services.refresh_details, vm)
    admin = people["admin"]
    sockets = open_as(page, stack, admin, f"/vms/{vm.pk}/")
    buttons = page.locator(f"[data-vm-buttons='{vm.pk}']")
    start = buttons.get_by_role("button", name="Start", exact=True)
    force_off = buttons.get_by_role("button", name="Force off", exact=True)
    badge = page.locator("h1 [data-vm-state]")
    expect(badge).to_have_text("shutoff")
    expect(start).to_be_enabled()
    expect(force_off).to_be_disabled()
    sockets.wait_for_snapshot(page, f"/ws/vms/{vm.pk}/")
    page.evaluate("window.__marker = 1")

    elsewhere(act, vm, "start", admin)

    expect(badge).to_have_text("running", timeout=5_000)
    expect(start).to_be_disabled()
    expect(force_off).to_be_enabled()
    expect(buttons.get_by_role("button", name="Pause", exact=True)).to_be_enabled()
    expect(buttons.get_by_role("button", name="Resume", exact=True)).to_be_disabled()
    assert page.evaluate("window.__marker") == 1, "the page reloaded"

    # Force off asks first: dismissed, nothing happens; accepted, the VM goes off.
    asked: list[str] = []

    def answer(accept: bool):
        def on_dialog(dialog) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return on_dialog

    page.once("dialog", answer(False))
    force_off.click()
    expect(force_off).to_be_enabled()
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "running"
    page.once("dialog", answer(True))
    force_off.click()

    expect(page.locator(".alert-success")).to_have_text(f"{vm.name}: force off done; now shutoff.")
    assert (
        asked
        == [
            f"Force off {vm.name}? Like pulling the power cord: what the guest has not written to disk is lost."
        ]
        * 2
    )
    expect(badge).to_have_text("shutoff")
    expect(start).to_be_enabled()
    expect(force_off).to_be_disabled()
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"

    # Started and stopped again behind the page's back, live: shut off with nothing
    # saved, Restore stays off (it needs a saved state as well as a shut-off VM).
    sockets.wait_for_snapshot(page, f"/ws/vms/{vm.pk}/")
    elsewhere(act, vm, "start", admin)
    expect(badge).to_have_text("running", timeout=5_000)
    hypervisor.destroy_domain(LOCAL_URI, str(vm.pk))
    expect(badge).to_have_text("shutoff", timeout=5_000)
    expect(start).to_be_enabled()
    expect(buttons.get_by_role("button", name="Restore", exact=True)).to_be_disabled()
    assert errors == []


def test_it_updates_the_overview_state_of_the_vm_page_live(
    stack, transactional_db, make_vm, people, browser_page
):
    page = browser_page
    vm = elsewhere(make_vm)
    admin = people["admin"]
    sockets = open_as(page, stack, admin, f"/vms/{vm.pk}/")
    expect(page.locator("[data-vm-state-text]")).to_have_text("Shut off")
    sockets.wait_for_snapshot(page, f"/ws/vms/{vm.pk}/")

    elsewhere(act, vm, "start", admin)

    expect(page.locator("h1 [data-vm-state]")).to_have_text("running", timeout=5_000)
    expect(page.locator("[data-vm-state-text]")).to_have_text("Running", timeout=3_000)


def test_fresh_details_do_not_reload_a_page_the_user_is_typing_in(
    stack, transactional_db, make_vm, people, browser_page
):
    page = browser_page
    vm = elsewhere(make_vm)
    admin = people["admin"]
    # Details read "just now": opening the page does not start a read of its own.
    fresh_until = (timezone.now() + timedelta(minutes=10)).isoformat()
    VirtualMachine.objects.filter(pk=vm.pk).update(details={"read_at": fresh_until})
    sockets = open_as(page, stack, admin, f"/vms/{vm.pk}/#options")
    sockets.wait_for_snapshot(page, f"/ws/vms/{vm.pk}/")
    page.evaluate("() => { window.sameDocument = true; }")
    page.get_by_label("Clone as").fill("half-typed")

    # New details for the VM arrive: untouched, the page would reload itself to show them.
    def new_details() -> None:
        fresh = VirtualMachine.objects.get(pk=vm.pk)
        fresh.details = {**fresh.details, "read_at": timezone.now().isoformat()}
        fresh.save(update_fields=["details"])
        vm_services.publish_vm(fresh)

    elsewhere(new_details)

    expect(page.locator("[data-stale-notice]")).to_contain_text("This page has newer information.")
    assert page.evaluate("() => window.sameDocument") is True
    expect(page.get_by_label("Clone as")).to_have_value("half-typed")
