"""The page cache's front door: a second look at the VM list, the VM API list or the
dashboard is answered from Redis before Django, through the ASGI application the web
server runs (panel.asgi.application), and only when Django would answer the same: the
same page and headers, a CSRF token the session can post with, nothing for a session
that logged out, changed its password or was never logged in, nothing of another user's.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest
import redis.asyncio
from django.test import Client

from panel import pagecache
from panel.asgi import application
from panel.services import create_token
from vms.models import VirtualMachine

from .conftest import texts, virsh

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.libvirt]

# Headers Django's middleware adds that a user's browser acts on.
SECURITY_HEADERS = (
    "content-type",
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "vary",
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    reached_django: bool

    @property
    def content(self) -> bytes:  # read by the page helpers of conftest
        return self.body

    def text(self) -> str:
        return self.body.decode()


@pytest.fixture
def django_calls(monkeypatch) -> list[str]:
    """The paths of the requests the front door passed on to Django."""
    front_door = application.application_mapping["http"]
    assert isinstance(front_door, pagecache.FrontDoor)
    django = front_door.app
    calls: list[str] = []

    async def counted(scope, receive, send):  # type: ignore[no-untyped-def]
        calls.append(scope["path"])
        await django(scope, receive, send)

    monkeypatch.setattr(front_door, "app", counted)
    return calls


@pytest.fixture(autouse=True)
def short_entries(settings):
    """Entries (and a new session's pause) last one second, so the tests need not wait."""
    settings.PANEL_STATS_INTERVAL = 1


def call(
    calls: list[str], method: str, path: str, headers: dict[str, str | list[str]], body: bytes = b""
) -> Answer:
    """One request through panel.asgi.application, on an event loop of its own thread; a
    header given a list is sent once per value."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")]
        + [
            (k.lower().encode("latin1"), v.encode("latin1"))
            for k, values in headers.items()
            for v in ([values] if isinstance(values, str) else values)
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await application(scope, receive, send)

    before = len(calls)
    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(60)
    start = sent[0]
    cookies = [v.decode("latin1") for k, v in start["headers"] if k.lower() == b"set-cookie"]
    answer_headers = {
        k.decode("latin1").lower(): v.decode("latin1")
        for k, v in start["headers"]
        if k.lower() != b"set-cookie"
    }
    if cookies:
        answer_headers["set-cookie"] = "\n".join(cookies)
    return Answer(
        status=start["status"],
        headers=answer_headers,
        body=b"".join(m.get("body", b"") for m in sent[1:]),
        reached_django=len(calls) > before,
    )


@dataclass
class Browser:
    """Cookies kept between requests, as a browser keeps them."""

    calls: list[str]
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: bytes = b"", **headers: Any) -> Answer:
        sent: dict[str, str | list[str]] = {**self.headers, **headers}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        answer = call(self.calls, method, path, sent, body)
        for line in answer.headers.get("set-cookie", "").splitlines():
            for name, morsel in SimpleCookie(line).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return answer

    def get(self, path: str, **headers: Any) -> Answer:
        return self.request("GET", path, **headers)

    def post(self, path: str, data: dict[str, Any]) -> Answer:
        body = urlencode(data, doseq=True).encode()
        return self.request(
            "POST", path, body, **{"Content-Type": "application/x-www-form-urlencoded"}
        )


def logged_in(calls: list[str], user) -> Browser:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return Browser(calls, cookies={"sessionid": client.cookies["sessionid"].value})


def settled(browser: Browser, path: str, **headers: str) -> Answer:
    """Ask for path until Django stops seeing it (a login pauses the front door for one
    entry's life); the front door's answer."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = browser.get(path, **headers)
        assert answer.status == 200, (path, answer.status, answer.body[:300])
        if not answer.reached_django:
            return answer
        time.sleep(0.2)
    raise AssertionError(f"{path} never came from the front door")


def state_in_list(answer: Answer, name: str) -> str:
    cells = texts(answer, f"//tr[.//a[normalize-space()='{name}']]//span[@data-vm-state]")
    return cells[0].strip() if cells else ""


def csrf_token(answer: Answer) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', answer.text())
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_a_second_look_comes_before_django_with_a_token_the_session_can_post_with(
    make_vm, people, django_calls
):
    vm = make_vm(running=True)
    browser = logged_in(django_calls, people["operator"])
    first = browser.get("/vms/")
    assert first.status == 200 and first.reached_django
    assert "csrftoken" in browser.cookies

    again = settled(browser, "/vms/")
    assert vm.name in again.text()
    # Each answer masks the secret anew (as Django does), from the browser's own cookie.
    assert csrf_token(again) != csrf_token(settled(browser, "/vms/"))

    done = browser.post(
        "/vms/bulk/",
        {"csrfmiddlewaretoken": csrf_token(again), "action": "force-off", "vm": str(vm.pk)},
    )
    assert done.status == 302, done.body[:300]
    assert virsh("domstate", vm.name).strip() == "shut off"
    # The change ended the stored page: Django renders the new state.
    after = browser.get("/vms/")
    assert after.reached_django
    assert state_in_list(after, vm.name) == "shutoff"


def test_its_answer_carries_the_headers_django_gives(make_vm, people, django_calls):
    make_vm()
    browser = logged_in(django_calls, people["operator"])
    for path in ("/vms/", "/"):
        rendered = browser.get(path)
        cached = settled(browser, path)
        for name in SECURITY_HEADERS:
            assert cached.headers.get(name) == rendered.headers.get(name), (path, name)
        assert cached.headers["content-length"] == str(len(cached.body))
        assert "set-cookie" not in cached.headers


def test_a_session_that_logged_out_or_changed_its_password_gets_the_login_page(
    make_vm, people, django_calls
):
    make_vm()
    browser = logged_in(django_calls, people["operator"])
    browser.get("/vms/")
    page = settled(browser, "/vms/")
    stolen = dict(browser.cookies)

    out = browser.post("/logout/", {"csrfmiddlewaretoken": csrf_token(page)})
    assert out.status == 302
    replay = Browser(django_calls, cookies=stolen).get("/vms/")
    assert replay.reached_django and replay.status == 302
    assert replay.headers["location"].startswith("/login/")

    member = logged_in(django_calls, people["member"])
    member.get("/")
    settled(member, "/")
    user = people["member"]
    user.set_password("a-new-password-5Tq")
    user.save()
    replay = member.get("/")
    assert replay.reached_django and replay.status == 302


def test_another_user_or_a_made_up_session_never_gets_a_stored_page(make_vm, people, django_calls):
    vm = make_vm()
    operator = logged_in(django_calls, people["operator"])
    operator.get("/vms/")
    assert vm.name in settled(operator, "/vms/").text()

    outsider = logged_in(django_calls, people["outsider"])
    outsider.cookies["csrftoken"] = operator.cookies["csrftoken"]
    for _ in range(3):
        page = outsider.get("/vms/")
        assert page.status == 200 and vm.name not in page.text()

    made_up = Browser(django_calls, cookies={**operator.cookies, "sessionid": "x" * 32})
    answer = made_up.get("/vms/")
    assert answer.reached_django and answer.status == 302


def test_an_api_token_is_answered_until_it_is_replaced(make_vm, people, django_calls):
    vm = make_vm()
    user = people["operator"]
    token = create_token(user, actor=user).key
    api = Browser(django_calls, headers={"Authorization": f"Token {token}"})
    path = "/api/v1/vms/?page_size=50"
    first = api.get(path, Accept="application/json")
    assert first.reached_django and vm.name in first.text()
    cached = settled(api, path, Accept="application/json")
    assert cached.body == first.body

    create_token(user, actor=user)  # a new token replaces the old one
    answer = api.get(path, Accept="application/json")
    assert answer.reached_django and answer.status == 401


def test_what_it_cannot_vouch_for_goes_to_django(make_vm, people, django_calls, monkeypatch):
    vm = make_vm()
    browser = logged_in(django_calls, people["operator"])
    browser.get("/vms/")
    settled(browser, "/vms/")

    # A flash message waiting in its cookie.
    answer = Browser(django_calls, cookies={**browser.cookies, "messages": "x"}).get("/vms/")
    assert answer.reached_django
    # No CSRF cookie yet: Django gives one.
    no_csrf = Browser(django_calls, cookies={"sessionid": browser.cookies["sessionid"]})
    answer = no_csrf.get("/vms/")
    assert answer.reached_django and "csrftoken=" in answer.headers["set-cookie"]
    # Another query string: its own page, not the stored one.
    other = browser.get("/vms/?q=no-such-vm")
    assert other.reached_django and vm.name not in other.text()
    # A header the page depends on, sent twice (Django would join the two).
    assert browser.get("/vms/", Accept=["text/html", "text/html"]).reached_django

    # Redis away: Django answers, the page still shows.
    front_door = application.application_mapping["http"]
    monkeypatch.setattr(
        front_door,
        "_redis",
        lambda: redis.asyncio.Redis(port=9, socket_connect_timeout=1),  # discard port
    )
    answer = browser.get("/vms/")
    assert answer.status == 200 and answer.reached_django and vm.name in answer.text()


def test_a_changed_row_ends_the_stored_dashboard(make_vm, people, django_calls):
    vm = make_vm()
    browser = logged_in(django_calls, people["operator"])
    browser.get("/")
    settled(browser, "/")
    VirtualMachine.objects.get(pk=vm.pk).host.save()
    assert browser.get("/").reached_django
