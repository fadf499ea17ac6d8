"""Redis killed and started again under a running web server.

Sessions live in the database, so pages and the API keep answering while
Redis (cache, channel layer, job queue, console tickets, stats) is away:
what needs Redis answers 503 with a reason, nothing answers 500. Once Redis
is back, an open page receives live updates again without a reload.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlencode
from urllib.request import Request

import pytest
from rest_framework.authtoken.models import Token

from panel import hypervisor
from panel.models import Host, Job
from tests.conftest import guest_spec
from tests.faults.panel_client import Panel
from vms.services import sync_domain

pytest_plugins = ["tests.faults.fault_host", "tests.faults.redis_stack"]
pytestmark = [
    pytest.mark.libvirt,
    pytest.mark.stack,
    pytest.mark.browser,
    pytest.mark.timeout(180),
]


@pytest.fixture
def world(redis_stack, transactional_db, django_user_model, client, fault_host, panel_test_guest):
    admin = django_user_model.objects.create_superuser("root", "", "root-pass-3k")
    client.force_login(admin)
    token, _ = Token.objects.get_or_create(user=admin)
    # The guest runs on a private libvirtd: this test needs nothing of the machine's.
    uri = fault_host.uri
    guest = hypervisor.define_domain(uri, guest_spec(panel_test_guest, name="redis-guest"))
    host = Host.objects.create(name="fault", uri=uri, state="up")
    vm = sync_domain(host, hypervisor.start_domain(uri, guest.uuid))
    return {
        "panel": Panel(redis_stack.url, client.cookies["sessionid"].value, token.key),
        "host": host,
        "vm": vm,
    }


def log_in(url: str, username: str, password: str) -> tuple[int, str]:
    """A login form post as a browser sends it; the answer (302: logged in)."""
    import http.cookiejar
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    opener.open(url + "/login/", timeout=10).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf})
    request = Request(url + "/login/", data=body.encode(), headers={"Referer": url + "/login/"})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_it_keeps_answering_without_redis_and_resumes_live_updates(redis_stack, world, page):
    panel, vm, host = world["panel"], world["vm"], world["host"]
    page.context.add_cookies(
        [{"name": "sessionid", "value": panel.sessionid, "url": redis_stack.url}]
    )
    page.goto(f"{redis_stack.url}/vms/")
    badge = page.locator(f'tr[data-vm="{vm.pk}"] [data-vm-state]')
    assert badge.inner_text() == "running"
    page.evaluate("window.notReloaded = true")
    time.sleep(1)  # the page's websockets are open

    redis_stack.redis.stop()

    for path in ["/", "/vms/", f"/vms/{vm.pk}/", "/hosts/", f"/hosts/{host.pk}/", "/jobs/"]:
        status, _ = panel.page(path)
        assert status == 200, (path, status)
    for path in ["vms/", f"vms/{vm.pk}/", "hosts/", "jobs/"]:
        status, body = panel.api("GET", path)
        assert status == 200, (path, status, body)
    # Logging in needs only the database (the throttle counts in memory meanwhile).
    status, text = log_in(redis_stack.url, "root", "root-pass-3k")
    assert status == 302, (status, re.findall(r'class="[^"]*(?:error|alert)[^"]*">([^<]*)', text))
    status, body = panel.api(
        "POST", "auth/token/", {"username": "root", "password": "root-pass-3k"}
    )
    assert status == 200 and body["token"], (status, body)
    # What needs Redis says so.
    status, body = panel.api("GET", f"vms/{vm.pk}/stats/")
    assert status == 503 and "Redis" in body["detail"], (status, body)
    status, body = panel.api("POST", f"vms/{vm.pk}/console/", {"type": "serial"})
    assert status == 503 and "Redis" in body["detail"], (status, body)
    status, body = panel.api("POST", f"vms/{vm.pk}/shutdown/", {"mode": "acpi"})
    assert status == 503 and "job queue (Redis)" in body["detail"], (status, body)
    job = Job.objects.filter(target=f"vm:{vm.pk}").get()
    assert job.state == "failed" and "Redis" in job.message, "no job is left queued forever"
    # A direct action works: libvirt does it, only its push to browsers is lost.
    status, body = panel.api("POST", f"vms/{vm.pk}/suspend/", {})
    assert status == 200 and body["state"] == "paused", (status, body)
    status, body = panel.api("POST", f"vms/{vm.pk}/resume/", {})
    assert status == 200 and body["state"] == "running", (status, body)

    redis_stack.redis.start()
    back = time.monotonic()

    # The open page reconnects by itself and shows a change made from now on.
    deadline = back + 30
    while True:
        status, body = panel.api("POST", f"vms/{vm.pk}/suspend/", {})
        assert status == 200, (status, body)
        try:
            page.wait_for_function(
                "el => el.textContent === 'paused'", arg=badge.element_handle(), timeout=3000
            )
            break
        except Exception:  # noqa: BLE001 - not reconnected yet: try again
            assert time.monotonic() < deadline, "live updates did not resume after Redis came back"
            status, body = panel.api("POST", f"vms/{vm.pk}/resume/", {})
            assert status == 200, (status, body)
    assert page.evaluate("window.notReloaded") is True, "the page had to reload"
    resumed_after = time.monotonic() - back
    status, body = panel.api("POST", f"vms/{vm.pk}/console/", {"type": "serial"})
    assert status == 200, (status, body)
    print(f"live updates resumed {resumed_after:.1f} s after Redis came back")
