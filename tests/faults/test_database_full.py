"""PostgreSQL that takes no more connections (every slot of the server, or the database's
own limit, taken by a burst of requests or by other programs).

The web server takes its connections from a pool (PANEL_DB_POOL), so the connections it
holds keep serving: pages and the API are answered. A web server without a pool (or one
whose pool must grow) gets a 503 saying what happened and to try again, for pages and
the API alike, not a server error; once a connection is free the same requests are
answered.

On the real stack: the test lowers the test database's connection limit to what is open
already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import requests
from django.db import connection
from django.test import Client

from panel import services
from panel.actors import Actor
from tests.stack import free_port, process_env, spawn, stop_process, wait_for_web, web_server

pytestmark = [
    pytest.mark.stack,
    pytest.mark.libvirt,
    pytest.mark.postgres_only,
    # Whatever else of the panel opens a connection in that moment (a worker taking a
    # periodic task, beat) is refused too, and logs it.
    pytest.mark.allow_log_errors(
        r"too many connections for database", "the test refuses new connections on purpose"
    ),
]


@contextlib.contextmanager
def no_new_connections() -> Iterator[None]:
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name])
        open_now = cursor.fetchone()[0]
        cursor.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT {open_now}')
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')


@pytest.fixture
def credentials(admin_user) -> tuple[dict[str, str], dict[str, str]]:
    client = Client()
    client.force_login(admin_user)
    token = services.create_token(admin_user, actor=Actor(admin_user)).key
    return {"sessionid": client.cookies["sessionid"].value}, {"Authorization": f"Token {token}"}


def test_the_web_server_keeps_serving_from_its_pool(stack, transactional_db, credentials):
    cookie, api = credentials
    # The pool holds its connections once the server has answered.
    assert requests.get(f"{stack.url}/", cookies=cookie, timeout=30).status_code == 200

    with no_new_connections():
        page = requests.get(f"{stack.url}/", cookies=cookie, timeout=30)
        listing = requests.get(f"{stack.url}/api/v1/vms/", headers=api, timeout=30)

    assert page.status_code == 200, page.text[:500]
    assert listing.status_code == 200, listing.text[:500]


def test_without_a_free_connection_it_answers_503_and_then_serves_again(
    stack, transactional_db, credentials, tmp_path
):
    cookie, api = credentials
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "web-without-pool.log"
    web = spawn(web_server(port), log, env={**process_env(), "PANEL_DB_POOL": "0"})
    try:
        wait_for_web(url, web, log)
        with no_new_connections():
            page = requests.get(f"{url}/", cookies=cookie, timeout=30)
            listing = requests.get(f"{url}/api/v1/vms/", headers=api, timeout=30)
        again = requests.get(f"{url}/", cookies=cookie, timeout=30)
        api_again = requests.get(f"{url}/api/v1/vms/", headers=api, timeout=30)
    finally:
        stop_process(web)

    assert page.status_code == 503, page.text[:500]
    assert "takes no more connections" in page.text and "Try again" in page.text
    assert page.headers["Retry-After"] == "5"
    assert listing.status_code == 503, listing.text[:500]
    assert "takes no more connections" in listing.json()["detail"]
    assert again.status_code == 200 and api_again.status_code == 200
