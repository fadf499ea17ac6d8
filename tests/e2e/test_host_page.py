"""End to end, in headless Chromium against the running stack (web server + Celery + Redis).

What a user sees: the login page, the dashboard, a real host's checks and facts,
and a refresh whose progress bar moves live over the websocket up to 100 %.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from panel import services
from panel.actors import Actor
from panel.choices import AuditResult, JobState
from panel.models import AuditEvent, Host, Job
from panel.templatetags.panel_tags import ibytes

LOCAL_URI = "qemu:///system"
ADMIN_PASSWORD = "admin-pass-9d3k"
UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"
SCREENSHOT = "/tmp/e2e-host-page.png"

# The host page with a finished job card, checks shown, and no self-reload pending
# (the card carries data-reload-on-done until live.js has seen the job finish).
HOST_PAGE_SETTLED = """(jobId) => {
  const card = document.querySelector('.job-card');
  if (!card || card.dataset.jobId !== String(jobId)) return false;
  const state = card.querySelector('[data-job-state]').textContent.trim();
  const bar = card.querySelector('[data-job-progress] .progress-bar').textContent.trim();
  return state === 'succeeded' && bar === '100 %'
    && !card.hasAttribute('data-reload-on-done')
    && document.querySelectorAll('table.host-checks tr.check').length > 0;
}"""

JOB_CARD_SNAPSHOT = """() => {
  const card = document.querySelector('.job-card');
  if (!card) return null;
  return {
    id: card.dataset.jobId,
    bar: card.querySelector('[data-job-progress] .progress-bar').textContent.trim(),
    state: card.querySelector('[data-job-state]').textContent.trim(),
  };
}"""

# live.js reloads the host page 1.5 s after its job finishes; wait that out.
RELOAD_GRACE_MS = 2500


def log_in(page, stack, password: str = ADMIN_PASSWORD, username: str = "admin") -> None:
    """Open the panel anonymously, get sent to the login page, and submit the form."""
    page.goto(stack.url + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def wait_for_job(page, job_id: int, timeout: float) -> Job:
    """Poll the database until the job has finished; the browser keeps processing events."""
    deadline = time.monotonic() + timeout
    while True:
        job = Job.objects.get(pk=job_id)
        if job.is_finished:
            return job
        if time.monotonic() > deadline:
            pytest.fail(
                f"job #{job_id} still {job.state} at {job.progress} % after {timeout:.0f} s"
            )
        page.wait_for_timeout(250)


def settle_host_page(page, job_id: int) -> None:
    """Let any pending self-reload happen, then wait for the settled host page."""
    page.wait_for_function(HOST_PAGE_SETTLED, arg=job_id, timeout=15_000)
    page.wait_for_timeout(RELOAD_GRACE_MS)
    page.wait_for_load_state("load")
    page.wait_for_function(HOST_PAGE_SETTLED, arg=job_id, timeout=15_000)


def finish_host_jobs(host_id: int, timeout: float = 90.0) -> None:
    """Do not flush the database under a refresh the worker is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unfinished = Job.objects.filter(
            host_id=host_id, state__in=[JobState.QUEUED, JobState.RUNNING]
        )
        if not unfinished.exists():
            return
        time.sleep(0.5)


def progress_value(text: str) -> int:
    match = re.fullmatch(r"(\d+) %", text)
    assert match, f"progress bar text {text!r} is not like '42 %'"
    return int(match.group(1))


@pytest.mark.browser
@pytest.mark.stack
@pytest.mark.libvirt
@pytest.mark.timeout(180)
def test_it_shows_the_host_checks_and_a_refresh_reaching_100_percent(
    stack, transactional_db, django_user_model, page
):
    admin = django_user_model.objects.create_superuser("admin", "", ADMIN_PASSWORD)
    host = services.add_host(name="local", uri=LOCAL_URI, actor=Actor(admin))
    first_job = Job.objects.get(host=host)
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    try:
        log_in(page, stack)
        expect(page).to_have_url(stack.url + "/")
        card = page.locator(".host-card", has_text="local")
        expect(card).to_be_visible()
        expect(card).to_contain_text(LOCAL_URI)

        card.get_by_role("link", name="local", exact=True).click()
        host_url = f"{stack.url}/hosts/{host.pk}/"
        expect(page).to_have_url(host_url)
        expect(page.get_by_role("heading", name=re.compile(r"^local\b"))).to_be_visible()

        # The refresh queued by add_host boots a probe guest: ~15-20 s. The page
        # reloads itself 1.5 s after that job finishes; reload by hand if it did not.
        loads_before = len(loads)
        finished = wait_for_job(page, first_job.pk, timeout=90)
        assert finished.state == JobState.SUCCEEDED, (
            finished.state,
            finished.message,
            finished.log,
        )
        try:
            page.wait_for_function(HOST_PAGE_SETTLED, arg=first_job.pk, timeout=10_000)
        except PlaywrightError:
            page.reload()
        settle_host_page(page, first_job.pk)
        print(f"host page reloaded itself after the first job: {len(loads) > loads_before}")

        host.refresh_from_db()
        checks = page.locator("table.host-checks tr.check")
        expect(checks.first).to_be_visible()
        names = [n.strip() for n in checks.locator("td:first-child").all_inner_texts()]
        assert "KVM guests run" in names, names
        assert "Domain type" in names, names
        assert len(names) == len(host.checks), (names, host.checks)
        badges = page.locator("table.host-checks .check-badge").filter(
            has_text=re.compile(r"^(PASS|FAIL)$")
        )
        expect(badges.first).to_be_visible()

        version = host.facts["libvirt_version"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
        expect(page.locator(".host-facts dt:text-is('libvirt') + dd")).to_have_text(version)
        expect(page.locator(".host-facts dt:text-is('Domain type') + dd")).to_have_text(
            host.domain_type
        )

        advice = page.locator("p.memory-advice")
        expect(advice).to_be_visible()
        advice_text = advice.inner_text().replace("\xa0", " ")
        assert "for the host itself" in advice_text, advice_text
        assert ibytes(host.memory_reserved) in advice_text
        assert ibytes(host.memory_for_guests) in advice_text

        # A new refresh, watched live: the bar must move before it reaches 100 %.
        page.get_by_role("button", name="Refresh", exact=True).click()
        expect(page.locator(".alert", has_text="Refresh of local started")).to_be_visible()
        new_job = Job.objects.filter(host=host).exclude(pk=first_job.pk).get()
        expect(page.locator(".job-card")).to_have_attribute("data-job-id", str(new_job.pk))

        bars: list[str] = []
        states: list[str] = []
        deadline = time.monotonic() + 90
        while True:
            try:
                snap = page.evaluate(JOB_CARD_SNAPSHOT)
            except PlaywrightError:
                snap = None  # the page is reloading itself
            if snap and snap["id"] == str(new_job.pk):
                if not bars or bars[-1] != snap["bar"]:
                    bars.append(snap["bar"])
                if not states or states[-1] != snap["state"]:
                    states.append(snap["state"])
                if snap["bar"] == "100 %" and snap["state"] == "succeeded":
                    break
                assert snap["state"] in {"queued", "running", "succeeded"}, (snap, bars, states)
            if time.monotonic() > deadline:
                job = Job.objects.get(pk=new_job.pk)
                pytest.fail(
                    f"refresh did not reach 100 % in 90 s: bars seen {bars}, states seen "
                    f"{states}; in the database {job.state} at {job.progress} %: {job.message}"
                )
            page.wait_for_timeout(100)
        print(f"progress seen: {bars}; states seen: {states}")

        values = [progress_value(b) for b in bars]
        # The bar showed a value between the start and the end: it moved live.
        intermediate = [v for v in values[:-1] if 1 <= v <= 99]
        assert intermediate, f"the progress bar jumped straight to 100 %: {bars}"
        assert values == sorted(values) and values[-1] == 100, bars

        settle_host_page(page, new_job.pk)
        job_card = page.locator(".job-card")
        expect(job_card.locator("[data-job-progress] .progress-bar")).to_have_text("100 %")
        expect(job_card.locator("[data-job-progress] .progress-bar")).not_to_have_class(
            re.compile(r"progress-bar-animated")
        )
        expect(job_card.locator("[data-job-state]")).to_have_text("succeeded")
        expect(page.locator("[data-host-state]")).to_have_text("up")
        new_job.refresh_from_db()
        assert (new_job.state, new_job.progress) == (JobState.SUCCEEDED, 100), new_job.log
        page.screenshot(path=SCREENSHOT, full_page=True)
        assert page_errors == [], page_errors
    finally:
        finish_host_jobs(host.pk)


@pytest.mark.browser
@pytest.mark.stack
@pytest.mark.timeout(180)
def test_it_refuses_a_bad_login_and_lets_the_admin_in(stack, transactional_db, admin_user, page):
    log_in(page, stack, password="not-the-password")
    error = page.locator(".alert-danger")
    expect(error).to_contain_text("Please enter a correct username and password")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.locator("nav.navbar")).to_have_count(0)
    expect(page.get_by_label("Username")).to_have_value("admin")
    expect(page.get_by_label("Password")).to_have_value("")

    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(stack.url + "/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    nav = page.locator("nav.navbar")
    for name in ("Hosts", "VMs", "Storage", "Networks", "Jobs", "Audit"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(nav).to_contain_text("admin")
    expect(nav.get_by_role("button", name="Log out")).to_be_visible()

    # The admin pages sit in one menu, so the bar stays one line wide.
    bar = nav.locator("ul.navbar-nav").first.bounding_box()
    link = nav.get_by_role("link", name="Hosts", exact=True).bounding_box()
    assert bar is not None and link is not None and bar["height"] < 2 * link["height"], bar
    nav.get_by_role("button", name="Admin").click()
    nav.get_by_role("link", name="Roles", exact=True).click()
    expect(page.get_by_role("heading", name="Roles")).to_be_visible()
    expect(nav.get_by_role("button", name="Admin")).to_have_class(re.compile(r"\bactive\b"))


@pytest.mark.browser
@pytest.mark.stack
@pytest.mark.timeout(180)
def test_it_shows_a_clear_error_when_adding_an_unreachable_host(
    stack, transactional_db, admin_user, page
):
    log_in(page, stack)
    expect(page).to_have_url(stack.url + "/")

    page.goto(stack.url + "/hosts/add/")
    expect(page.get_by_role("heading", name="Add host")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("far")
    page.get_by_label("libvirt URI").fill(UNREACHABLE_URI)
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/hosts/add/")
    ) as answer:
        page.get_by_role("button", name="Connect and add").click()
    assert answer.value.status == 400

    error = page.locator(".invalid-feedback")
    expect(error).to_be_visible()
    expect(error).to_contain_text(f"Could not connect to {UNREACHABLE_URI}")
    expect(page).to_have_url(stack.url + "/hosts/add/")
    expect(page.get_by_label("libvirt URI")).to_have_value(UNREACHABLE_URI)
    expect(page.get_by_label("libvirt URI")).to_have_class(re.compile(r"\bis-invalid\b"))

    assert not Host.objects.filter(name="far").exists()
    assert not Host.objects.filter(uri=UNREACHABLE_URI).exists()
    assert AuditEvent.objects.filter(
        action="host.add", target=UNREACHABLE_URI, result=AuditResult.FAILURE
    ).exists()
