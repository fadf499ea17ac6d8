"""PostgreSQL that takes no more connections (every slot of the server, or the database's
own limit, taken by a burst of requests) gets a 503 saying what happened and to try again,
for pages and the API alike, not a server error; once a connection is free again the
same requests are answered.

On the real stack: its web server opens a connection per request, and the test lowers
the test database's connection limit to what is open already.
"""

from __future__ import annotations

import pytest
import requests
from django.db import connection
from django.test import Client

from panel import services

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


def test_a_database_with_no_free_connection_answers_503_and_then_serves_again(
    stack, transactional_db, admin_user
):
    client = Client()
    client.force_login(admin_user)
    cookie = {"sessionid": client.cookies["sessionid"].value}
    token = services.create_token(admin_user, actor=admin_user).key
    api = {"Authorization": f"Token {token}"}
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name])
        open_now = cursor.fetchone()[0]
        cursor.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT {open_now}')
    try:
        page = requests.get(f"{stack.url}/", cookies=cookie, timeout=30)
        listing = requests.get(f"{stack.url}/api/v1/vms/", headers=api, timeout=30)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')

    assert page.status_code == 503, page.text[:500]
    assert "takes no more connections" in page.text and "Try again" in page.text
    assert page.headers["Retry-After"] == "5"
    assert listing.status_code == 503, listing.text[:500]
    assert "takes no more connections" in listing.json()["detail"]
    assert requests.get(f"{stack.url}/", cookies=cookie, timeout=30).status_code == 200
    assert requests.get(f"{stack.url}/api/v1/vms/", headers=api, timeout=30).status_code == 200
