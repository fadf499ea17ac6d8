"""Sessions that should be dead, used anyway.

The attacks: a user ends another user's session by guessing its id on the sessions page;
someone who copied a session cookie keeps using it (pages, API, websockets) after its
owner logged out everywhere; a session's websocket stays open after the session was
revoked from another browser, or opens with a session that expired.

What the panel does: a user reaches only their own sessions (another's id is 404; the
page of a user's sessions is the admins', tests/sessions); revoking deletes the session from the store, so its cookie is refused
at once, and tells its websockets to close (4401, which the pages' scripts take as "do
not reconnect"); a websocket with an expired session is refused on connect, and an open
one closes at the next check.
"""

from __future__ import annotations

import time
from importlib import import_module

import pytest
import requests
from django.conf import settings

from panel.identity.policy import SEEN_AT
from panel.models import UserSession
from tests.attacks.test_consoles import closed_code
from tests.stack import refusal

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(120)]


def row_of(attacker) -> UserSession:
    return UserSession.objects.get(session_key=attacker.sessionid)


def test_it_refuses_to_end_another_users_session_by_its_id(attacker):
    member, outsider = attacker("member"), attacker("outsider")
    target = row_of(member)

    guessed = outsider.post_form(f"/account/sessions/{target.pk}/revoke/")

    assert guessed.status_code == 404
    assert member.page("/vms/").status_code == 200
    assert UserSession.objects.filter(pk=target.pk).exists()


def test_it_closes_a_revoked_sessions_websocket_and_refuses_its_cookie(attacker):
    laptop, phone = attacker("member"), attacker("member")
    with phone.ws("/ws/notifications/") as ws:
        ws.recv(timeout=10)  # the bell's count: open

        ended = laptop.post_form(f"/account/sessions/{row_of(phone).pk}/revoke/")

        assert ended.status_code == 302
        assert closed_code(ws, 10) == 4401
    answer = phone.page("/vms/")
    assert (answer.status_code, answer.headers["Location"]) == (302, "/login/?next=/vms/")
    assert laptop.page("/vms/").status_code == 200


def test_a_copied_cookie_dies_when_its_owner_logs_out_everywhere(attacker):
    owner = attacker("member")
    thief = requests.Session()
    thief.cookies.set("sessionid", owner.sessionid)  # the cookie, copied
    assert thief.get(owner.stack.url + "/vms/", allow_redirects=False).status_code == 200
    with owner.ws("/ws/notifications/") as ws:
        ws.recv(timeout=10)

        assert owner.post_form("/account/sessions/revoke-all/").status_code == 302

        assert closed_code(ws, 10) == 4401
    page = thief.get(owner.stack.url + "/vms/", allow_redirects=False)
    api = thief.get(owner.stack.url + "/api/v1/vms/", allow_redirects=False)
    assert (page.status_code, page.headers["Location"]) == (302, "/login/?next=/vms/")
    assert api.status_code == 401
    assert refusal(owner.stack, "/ws/notifications/", owner.sessionid) == "close 4401"


def test_an_expired_session_opens_no_websocket_and_closes_an_open_one(attacker):
    member = attacker("member")
    store = import_module(settings.SESSION_ENGINE).SessionStore(member.sessionid)
    with member.ws("/ws/notifications/") as ws:
        ws.recv(timeout=10)
        store[SEEN_AT] = time.time() - settings.PANEL_SESSION_IDLE_SECONDS - 1
        store.save()

        assert closed_code(ws, settings.PANEL_WS_RECHECK_SECONDS + 10) == 4401
    assert refusal(member.stack, "/ws/notifications/", member.sessionid) == "close 4401"
