"""sessions/ in the API: the caller's own sessions, ended one by one or all at once."""

from __future__ import annotations

import pytest
from django.test import Client

from panel.models import AuditEvent, UserSession

from .conftest import ADMIN_PASSWORD, CHROME

pytestmark = pytest.mark.sqlite


@pytest.fixture
def token(admin_user, client) -> dict[str, str]:
    answer = client.post(
        "/api/v1/auth/token/",
        {"username": "admin", "password": ADMIN_PASSWORD},
        content_type="application/json",
    )
    return {"Authorization": f"Token {answer.json()['token']}"}


def test_it_lists_the_callers_sessions_and_marks_the_current_one(
    admin_user, plain_user, browser_of
):
    laptop = browser_of("admin")
    office = browser_of("admin", CHROME)
    browser_of("alice")

    rows = laptop.get("/api/v1/sessions/").json()["results"]

    assert len(rows) == 2
    current = [r for r in rows if r["current"]]
    assert [r["id"] for r in current] == [
        UserSession.objects.get(session_key=laptop.session.session_key).pk
    ]
    assert {r["browser"] for r in rows} == {"Firefox 133 on Linux", "Chrome 131 on Windows"}
    assert office.get("/vms/").status_code == 200


def test_it_ends_one_of_the_callers_sessions_and_no_one_elses(
    admin_user, plain_user, browser_of, token
):
    admin_browser, alice_browser = browser_of("admin"), browser_of("alice")
    client = Client(headers=token)
    mine = UserSession.objects.get(user=admin_user)
    hers = UserSession.objects.get(user=plain_user)

    assert client.delete(f"/api/v1/sessions/{hers.pk}/").status_code == 404
    assert client.delete(f"/api/v1/sessions/{mine.pk}/").status_code == 204

    assert admin_browser.get("/vms/").status_code == 302
    assert alice_browser.get("/vms/").status_code == 200
    assert AuditEvent.objects.filter(action="session.revoked", target="admin").count() == 1


def test_it_logs_out_everywhere_or_everywhere_else(admin_user, browser_of, token):
    here, there = browser_of("admin"), browser_of("admin")

    kept = here.post(
        "/api/v1/sessions/revoke-all/", {"keep_current": True}, content_type="application/json"
    )
    assert (kept.status_code, kept.json()) == (200, {"revoked": 1})
    assert (here.get("/vms/").status_code, there.get("/vms/").status_code) == (200, 302)

    everything = Client(headers=token).post("/api/v1/sessions/revoke-all/")
    assert everything.json() == {"revoked": 1}
    assert here.get("/vms/").status_code == 302
