"""Password guessing at the login, and formulas smuggled into the audit CSV.

The attacks: one address tries a password on many usernames (each stays under the
per-user limit); many guesses for one username arrive at once, so each reads the
failure count before any of them writes it; a client sends X-Forwarded-For to pass
for another address each time; and a username typed at the login page is a spreadsheet
formula, which lands in the audit log and then in an admin's CSV export.

What the panel does: it counts failures per username and address
(PANEL_LOGIN_FAILURES) and per address whatever the username
(PANEL_LOGIN_ADDRESS_FAILURES), each attempt taking its place in both counters in one
atomic Redis step before the password is checked; it believes X-Forwarded-For only from
the proxies in PANEL_TRUSTED_PROXIES (and then takes the last address no trusted proxy
added); and it exports a cell that starts like a formula with a leading apostrophe.

Each login test runs its own web server (the one scripts/run.sh runs) on the test
database with a cache prefix of its own, so the failures it makes throttle nobody else.
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from panel.models import AuditEvent
from tests.stack import free_port, process_env, spawn, stop_process, wait_for_web, web_server
from tests.vms.conftest import PASSWORDS

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]

WRONG = "Wrong username or password."
PER_ADDRESS = "Too many failed logins from your address."
PER_USER = "Too many failed logins for this user from your address."


@pytest.fixture
def web_server_with(transactional_db, stack, tmp_path) -> Iterator[Callable[..., str]]:
    """web_server_with(**env): the panel's web server on a free port with those settings
    and a cache prefix of its own; its URL. Its throttle counters go at the end. (The
    test's writes are committed, so the server sees them and may write itself.)"""
    started = []
    prefixes = []

    def start(**env: str) -> str:
        port = free_port()
        prefix = f"attack-login-{uuid.uuid4().hex[:8]}"
        prefixes.append(prefix)
        proc_env = {**process_env(), "PANEL_CACHE_PREFIX": prefix, **env}
        log = tmp_path / f"web-{port}.log"
        proc = spawn(web_server(port), log, env=proc_env)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for_web(url, proc, Path(log))
        return url

    yield start
    for proc in started:
        stop_process(proc)
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for prefix in prefixes:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


@pytest.fixture
def real_password_hashes(people):
    """The personas' passwords hashed with Django's default hasher, which the web server
    knows (the tests' fast MD5 hashes are for the test process only)."""
    hasher = PBKDF2PasswordHasher()
    for name, password in PASSWORDS.items():
        user = people[name]
        user.password = hasher.encode(password, hasher.salt())
        user.save(update_fields=["password"])
    return people


def get_token(url: str, username: str, password: str, **headers: str) -> requests.Response:
    return requests.post(
        f"{url}/api/v1/auth/token/",
        json={"username": username, "password": password},
        headers=headers,
        timeout=60,
    )


def test_it_throttles_an_address_that_tries_many_usernames(web_server_with, real_password_hashes):
    url = web_server_with()
    limit = django_settings.PANEL_LOGIN_ADDRESS_FAILURES

    # One guess per username, each far under the per-user limit; the X-Forwarded-For
    # headers change nothing (no trusted proxy).
    answers = [
        get_token(url, f"user{i}", "Summer2024!", **{"X-Forwarded-For": f"198.51.100.{i}"})
        for i in range(limit)
    ]
    assert [a.status_code for a in answers] == [400] * limit
    assert {a.json()["detail"] for a in answers} == {WRONG}

    # The next try from that address is refused, even with a user's right password.
    refused = get_token(url, "member", PASSWORDS["member"])
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith(PER_ADDRESS)
    assert "token" not in refused.json()


def test_it_counts_guesses_that_arrive_at_once_one_by_one(web_server_with, real_password_hashes):
    url = web_server_with()
    many = 24
    start = threading.Barrier(many)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        start.wait()
        answer = get_token(url, "member", f"guess-{i}")
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(many)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    statuses = sorted(a.status_code for a in answers)
    # Exactly the limit got a password check; every other guess was refused unchecked.
    assert statuses.count(400) == django_settings.PANEL_LOGIN_FAILURES, statuses
    assert statuses.count(429) == many - django_settings.PANEL_LOGIN_FAILURES, statuses
    refused = get_token(url, "member", PASSWORDS["member"])
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith(PER_USER)


def test_it_believes_x_forwarded_for_only_from_a_trusted_proxy(
    web_server_with, real_password_hashes
):
    direct = web_server_with()
    proxied = web_server_with(PANEL_TRUSTED_PROXIES="127.0.0.1")
    limit = django_settings.PANEL_LOGIN_FAILURES

    # Straight to the server: a new X-Forwarded-For on every guess is still one address.
    for i in range(limit):
        answer = get_token(direct, "member", "wrong", **{"X-Forwarded-For": f"203.0.113.{i}"})
        assert answer.status_code == 400
    spoofed = get_token(
        direct, "member", PASSWORDS["member"], **{"X-Forwarded-For": "203.0.113.200"}
    )
    assert spoofed.status_code == 429

    # Behind the trusted proxy (127.0.0.1 here) each client is its own address: the one
    # the proxy appended, whatever the client put before it.
    guesser = {"X-Forwarded-For": "192.0.2.1, 203.0.113.9"}
    for _ in range(limit):
        assert get_token(proxied, "operator", "wrong", **guesser).status_code == 400
    assert get_token(proxied, "operator", PASSWORDS["operator"], **guesser).status_code == 429
    colleague = {"X-Forwarded-For": "203.0.113.10"}
    assert get_token(proxied, "operator", PASSWORDS["operator"], **colleague).status_code == 200

    addresses = set(
        AuditEvent.objects.filter(action="login.failed", target="operator").values_list(
            "source_ip", flat=True
        )
    )
    assert addresses == {"203.0.113.9"}


FORMULA = "=cmd|' /C calc'!A0"


def test_it_exports_a_username_typed_as_a_formula_as_text(web_server_with, attacker):
    url = web_server_with()
    assert get_token(url, FORMULA, "anything").status_code == 400
    assert get_token(url, "@SUM(1+1)*cmd|' /C calc'!A0", "anything").status_code == 400

    export = attacker("admin").page("/audit/export.csv?action=login.failed")

    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    targets = {row["target"] for row in rows}
    assert "'" + FORMULA in targets
    assert "'@SUM(1+1)*cmd|' /C calc'!A0" in targets
    formulas = [c for row in rows for c in row.values() if c and c[0] in "=+-@\t\r"]
    assert formulas == []
