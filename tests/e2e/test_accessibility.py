# ruff: noqa: F811  (fixtures imported from the VM tests)
"""The main pages pass axe-core's WCAG 2 A and AA rules, in the light and the dark theme,
in headless Chromium against the running stack: the login page, the dashboard, the hosts
and a host, the VMs and a running VM (each of its tabs, its attach-disk form and its migrate dialog
open), the create wizard (each install method), the pools and a pool, the networks, the
jobs and a job, the audit log and the projects (the task panel at their foot closed and
open).

axe-core (tests/e2e/vendor/axe-core) is read from disk and evaluated in the page through
the DevTools protocol: the site's Content-Security-Policy admits no inline script, so
add_script_tag is refused, and the page keeps its policy (no bypass_csp) so that axe sees
it as a user does. Nothing is downloaded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from panel import services
from panel.actors import Actor
from panel.choices import JobState
from panel.models import Job
from storage.models import StoragePool
from tests.browser import signed_in
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    people,
    scratch_pool,
)
from vms.services.create.spec import METHODS

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(300)]

AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()
THEMES = ("light", "dark")

# Each violation with the elements it was found on (axe's CSS selectors).
RUN_AXE = """async () => {
  const result = await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']});
  return result.violations.map(v => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary})),
  }));
}"""


@dataclass
class Page:
    """A page to check as loaded, then again after each of `reveals` (what opens a part
    that the page hides at first: a dialog, a <details>, the fields of a choice)."""

    name: str
    path: str
    reveals: list[tuple[str, Callable[[Any], None]]] = field(default_factory=list)


def axe_violations(page) -> list[dict[str, Any]]:
    """axe's WCAG 2 A/AA violations on the page as it stands."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE_SOURCE)
    return page.evaluate(RUN_AXE)


def check_pages(page, stack, pages: list[Page]) -> None:
    """Open each page in each theme, run axe, and fail naming every violation found."""
    found: list[str] = []
    for theme in THEMES:
        page.emulate_media(color_scheme=theme)
        for p in pages:
            page.goto(stack.url + p.path)
            expect(page.locator("html")).to_have_attribute("data-bs-theme", theme)
            page.wait_for_timeout(300)  # the live updates that answer the page's first request
            # A tab the page reopens (the last one shown) fades in: read it once it is whole.
            page.wait_for_function(
                "() => [...document.querySelectorAll('.tab-pane.active')]"
                ".every(e => getComputedStyle(e).opacity === '1')"
            )
            for state, reveal in [("as loaded", lambda _page: None), *p.reveals]:
                reveal(page)
                for v in axe_violations(page):
                    found.append(
                        f"{p.name} ({p.path}, {state}), {theme}: {v['id']} [{v['impact']}] {v['help']}"
                    )
                    found.extend(f"    {n['target']}\n      {n['summary']}" for n in v["nodes"])
    assert not found, "axe found:\n" + "\n".join(found)


def open_migrate_dialog(page) -> None:
    page.get_by_role("button", name="Migrate…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).not_to_contain_text("Checking the hosts")  # the pre-check has answered
    page.wait_for_timeout(300)  # Bootstrap's fade


def task_panel(open_it: bool) -> Callable[[Any], None]:
    """Open (with its rows) or close the task panel at the foot of the page."""

    def toggle(page) -> None:
        panel = page.locator("[data-task-panel]")
        panel.locator("[data-task-toggle]").click()
        expect(panel.locator("[data-task-toggle]")).to_have_attribute(
            "aria-expanded", "true" if open_it else "false"
        )
        if open_it:
            expect(panel.locator("[data-task-job]").first).to_be_visible()

    return toggle


# The VM page's tabs past Hardware: axe reads only what is shown.
VM_TABS = ["Console", "Snapshots", "Backups", "Tuning", "Options", "History"]


def tab(name: str) -> Callable[[Any], None]:
    """Open the VM page's tab of that name."""

    def show(page) -> None:
        page.get_by_role("tab", name=name).click()
        expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
        # Bootstrap's fade over: read mid-way, colours are paler than they are.
        page.wait_for_function(
            "(id) => getComputedStyle(document.getElementById(id)).opacity === '1'",
            arg=name.lower(),
        )

    return show


def choose(*selectors: str) -> Callable[[Any], None]:
    """Tick these radio buttons in turn."""

    def tick(page) -> None:
        for selector in selectors:
            page.locator(selector).check()

    return tick


def finish_jobs(timeout: float = 120.0) -> None:
    """Do not flush the database under a job the worker is still running."""
    deadline = time.monotonic() + timeout
    while Job.objects.filter(state__in=[JobState.QUEUED, JobState.RUNNING]).exists():
        if time.monotonic() > deadline:
            pytest.fail(f"jobs still unfinished after {timeout:.0f} s")
        time.sleep(0.5)


def test_the_login_page_passes_axe_in_both_themes(stack, transactional_db, page):
    check_pages(page, stack, [Page("login", "/login/")])


@pytest.mark.libvirt
def test_the_main_pages_pass_axe_in_both_themes(
    stack, transactional_db, local_host, make_vm, people, scratch_pool, page
):
    admin = people["admin"]
    scratch_pool.add_volume("disk-a.qcow2")
    # A real refresh: the host's facts and checks, its pools and networks, and a job with
    # its log.
    job = services.refresh_host(local_host, actor=Actor(admin))
    try:
        finish_jobs()
        job.refresh_from_db()
        assert job.state == JobState.SUCCEEDED, job.log
        vm = make_vm(running=True)
        pool = StoragePool.objects.get(host=local_host, name=scratch_pool.name)
        signed_in(page, stack, admin)
        vm_page = f"/vms/{vm.pk}/"
        check_pages(
            page,
            stack,
            [
                Page("dashboard", "/"),
                Page("hosts", "/hosts/"),
                Page("host", f"/hosts/{local_host.pk}/"),
                Page("VMs", "/vms/"),
                Page(
                    "VM",
                    vm_page,
                    [
                        ("Summary tab", tab("Summary")),
                        ("Hardware tab", tab("Hardware")),
                        (
                            "attach-disk form open",
                            lambda page: page.get_by_text("Attach a disk or CD-ROM…").click(),
                        ),
                        *[(f"{name} tab", tab(name)) for name in VM_TABS],
                        ("migrate dialog open", open_migrate_dialog),
                    ],
                ),
                Page(
                    "create wizard",
                    "/vms/new/",
                    [(f"install method {m}", choose(f"#m-{m}")) for m in METHODS]
                    + [("cloud image, cloud-init as YAML", choose("#m-cloud-image", "#ci-yaml"))],
                ),
                Page("pools", "/storage/"),
                Page("pool", f"/storage/{pool.pk}/"),
                Page("networks", "/networks/"),
                Page("jobs", "/jobs/"),
                Page("job", f"/jobs/{job.pk}/"),
                Page("audit", "/audit/"),
                Page("projects", "/projects/"),
                # Closed again at the end: the next pages (the next theme's) open as left.
                Page(
                    "projects",
                    "/projects/",
                    [
                        ("task panel open", task_panel(True)),
                        ("task panel closed", task_panel(False)),
                    ],
                ),
            ],
        )
    finally:
        finish_jobs()
