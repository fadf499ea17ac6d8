"""A job failing in the real Celery worker reaches a subscribed member in the panel's
bell (pushed over the websocket), by email through a real SMTP server, and by a webhook
whose receiver answers 500 first: the panel tries again and the delivery log shows both
answers. The outsider, subscribed to everything, hears of none of it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import requests

from panel import jobs, services
from panel.actors import Actor
from panel.choices import JobKind, NotificationKind
from panel.models import Notification
from panel.tasks import refresh_host_task
from tests.stack import MAIL_PORT, open_ws

from .receivers import smtp_server, webhook_receiver

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


def api_session(user) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {services.create_token(user, actor=Actor(user)).key}"
    return session


def session_cookie(client, user) -> str:
    client.force_login(user)
    return client.cookies["sessionid"].value


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.2)
    raise AssertionError(f"still waiting after {timeout} s")


def failing_job(member, project) -> int:
    """A job of the member's project whose task fails in the worker (its host is gone)."""
    job = jobs.create_job(
        JobKind.HOST_REFRESH, target="host:gone", actor=Actor(member), project=project
    )
    jobs.enqueue_on_commit(refresh_host_task, job.pk)
    return job.pk


def test_it_tells_a_failed_job_in_the_bell_by_mail_and_by_a_webhook_tried_again(
    stack, transactional_db, people, alpha, client
):
    member, outsider = people["member"], people["outsider"]
    api = api_session(member)
    with smtp_server(MAIL_PORT) as mailbox, webhook_receiver(500, 200) as receiver:
        made = api.post(
            f"{stack.url}/api/v1/subscriptions/",
            json={
                "kinds": [NotificationKind.JOB_FAILED],
                "project": alpha.pk,
                "email": True,
                "webhook_url": receiver.url,
            },
            timeout=30,
        )
        assert made.status_code == 201, made.text
        sub = made.json()
        outsiders = api_session(outsider).post(
            f"{stack.url}/api/v1/subscriptions/",
            json={"kinds": ["job.failed", "backup.failed"], "webhook_url": receiver.url},
            timeout=30,
        )
        assert outsiders.status_code == 201, outsiders.text

        with open_ws(stack, "/ws/notifications/", session_cookie(client, member)) as ws:
            assert json.loads(ws.recv(timeout=10))["unread"] == 0
            job_id = failing_job(member, alpha)
            pushed = json.loads(ws.recv(timeout=60))

        wait_for(lambda: mailbox.messages)
        deliveries_url = f"{stack.url}/api/v1/subscriptions/{sub['id']}/deliveries/"

        def done():
            found = api.get(deliveries_url, timeout=30).json()["results"]
            return found if all(d["state"] == "sent" for d in found) and found else None

        deliveries = {d["channel"]: d for d in wait_for(done)}

    title = f"Host refresh #{job_id} failed on host:gone"
    assert pushed["type"] == "notification.new"
    assert (pushed["unread"], pushed["notification"]["title"]) == (1, title)
    assert pushed["notification"]["link"] == f"/jobs/{job_id}/"

    [(to, message)] = mailbox.messages
    assert to == ["member@example.test"]
    assert message["Subject"] == f"[KVM panel] {title}"
    assert "The host of this job was removed." in message.get_payload(decode=True).decode()

    # The receiver refused the first call; the panel tried again and it was taken.
    assert len(receiver.calls) == 2
    webhook = deliveries["webhook"]
    assert [(a["status"], a["answer"]) for a in webhook["log"]] == [
        (500, "receiver not ready"),
        (200, "accepted"),
    ]
    assert webhook["log"][0]["error"] == "the receiver answered 500"
    assert webhook["attempts"] == 2
    assert [a["status"] for a in deliveries["email"]["log"]] == [250]
    for call in receiver.calls:
        headers = call["headers"]
        signed = headers["X-Panel-Timestamp"].encode() + b"." + call["body"]
        mac = hmac.new(sub["webhook_secret"].encode(), signed, hashlib.sha256).hexdigest()
        assert headers["X-Panel-Signature"] == f"sha256={mac}"
        assert headers["X-Panel-Event"] == "job.failed"
        assert call["json"]["title"] == title
        assert abs(int(headers["X-Panel-Timestamp"]) - time.time()) < 120

    # The outsider subscribed to everything, with the same receiver: nothing for them.
    assert not Notification.objects.filter(user=outsider).exists()
    listed = api_session(outsider).get(f"{stack.url}/api/v1/notifications/", timeout=30)
    assert listed.json()["count"] == 0
