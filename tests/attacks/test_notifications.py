"""Attack: learn of another project's jobs and VMs through notifications, or make the
panel call into its own network through a webhook.

The outsider (a member of beta, hostile) subscribes to every kind in "all projects",
with an email and a webhook of their own, waits for alpha's job to fail, and then asks
for alpha's notifications by id, marks them read, reads a subscription's delivery log
and deletes it; they name alpha as the project of a subscription. A member of alpha
points a webhook at loopback, private and link-local addresses, and at a name that
resolved to a public address when it was saved and to the panel's own machine when the
call is made.

What the panel does: a notification is written only for users who may see what it is
about (panel.permissions, as for the object itself), so the outsider's bell, API list,
mailbox and receiver stay empty; subscriptions, notifications and deliveries are their
owner's alone (404 to anyone else, an admin included); a project the user is not in is
refused (400). A webhook URL must resolve only to public addresses unless an admin
allowed the receiver (PANEL_WEBHOOK_ALLOW: the test stack allows 127.0.0.1 alone), when
it is saved and again at every call, which goes to the address checked.
"""

from __future__ import annotations

import json
import time

import pytest

from panel.choices import DeliveryState, NotificationKind
from panel.models import Delivery, Notification, Subscription
from panel.notifications import delivery
from tests.notifications.receivers import webhook_receiver
from tests.notifications.test_delivery_live import failing_job

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(180)]


def test_it_tells_an_outsider_nothing_of_another_projects_failed_job(attacker, people, alpha):
    outsider, member = attacker("outsider"), people["member"]
    with webhook_receiver(200) as receiver:
        made = outsider.api(
            "POST",
            "subscriptions/",
            json={"kinds": NotificationKind.values[2:], "webhook_url": receiver.url},
        )
        assert made.status_code == 400  # host kinds are for admins
        made = outsider.api(
            "POST",
            "subscriptions/",
            json={
                "kinds": [k for k in NotificationKind.values if not k.startswith("host.")],
                "webhook_url": receiver.url,
            },
        )
        assert made.status_code == 201, made.text
        Subscription.objects.create(user=member, kinds=[NotificationKind.JOB_FAILED])

        with outsider.ws("/ws/notifications/") as ws:
            assert json.loads(ws.recv(timeout=10))["unread"] == 0
            failing_job(member, alpha)
            deadline = time.monotonic() + 60
            while not Notification.objects.filter(user=member).exists():
                assert time.monotonic() < deadline, "the member was not told"
                time.sleep(0.2)
            time.sleep(2)  # anything meant for the outsider would be pushed by now
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1)

    assert receiver.calls == []
    assert not Notification.objects.filter(user=outsider.user).exists()
    assert not Delivery.objects.filter(subscription__user=outsider.user).exists()
    assert outsider.api("GET", "notifications/").json()["count"] == 0
    assert "failed" not in outsider.page("/notifications/").text


def test_it_keeps_another_users_notifications_and_subscriptions_out_of_reach(
    attacker, people, alpha
):
    outsider, member = attacker("outsider"), people["member"]
    theirs = Subscription.objects.create(
        user=member,
        kinds=[NotificationKind.JOB_FAILED],
        webhook_url="https://hooks.example.org/alpha",
        webhook_secret="alpha-secret-not-for-others",
    )
    note = Notification.objects.create(
        user=member, kind=NotificationKind.JOB_FAILED, title="alpha-web backup failed"
    )

    answers = [
        outsider.api("GET", f"notifications/{note.pk}/").status_code,
        outsider.api("POST", f"notifications/{note.pk}/read/").status_code,
        outsider.api("GET", f"subscriptions/{theirs.pk}/").status_code,
        outsider.api("GET", f"subscriptions/{theirs.pk}/deliveries/").status_code,
        outsider.api(
            "PUT", f"subscriptions/{theirs.pk}/", json={"kinds": ["vm.crashed"]}
        ).status_code,
        outsider.api("DELETE", f"subscriptions/{theirs.pk}/").status_code,
        outsider.post_form(f"/notifications/{note.pk}/read/").status_code,
        outsider.post_form(f"/notifications/subscriptions/{theirs.pk}/delete/").status_code,
        outsider.api(
            "POST", "subscriptions/", json={"kinds": ["job.failed"], "project": alpha.pk}
        ).status_code,
        outsider.post_form(
            "/notifications/subscriptions/add/", {"kinds": "job.failed", "project": alpha.pk}
        ).status_code,
    ]

    assert answers == [404] * 8 + [400, 400]
    note.refresh_from_db()
    assert note.read_at is None
    theirs.refresh_from_db()
    assert theirs.kinds == [NotificationKind.JOB_FAILED]
    assert list(Subscription.objects.filter(user=outsider.user)) == []
    listed = (
        outsider.api("GET", "subscriptions/").text
        + outsider.page("/notifications/subscriptions/").text
    )
    assert "alpha-secret-not-for-others" not in listed
    assert "alpha-web" not in outsider.page("/notifications/").text


INSIDE = [
    "http://127.0.0.2:8000/hook",  # loopback, but not the address the admin allowed
    "http://2130706434/hook",  # 127.0.0.2 written as a number
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.2]/hook",
    "http://[64:ff9b::7f00:2]/hook",  # NAT64 of 127.0.0.2
    "http://[2002:7f00:2::1]/hook",  # 6to4 of 127.0.0.2
    "http://[::127.0.0.2]/hook",  # IPv4-compatible
    "http://0.0.0.0:80/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
]


def test_it_refuses_webhooks_into_the_panels_own_network(attacker):
    member = attacker("member")

    answers = {
        url: member.api(
            "POST", "subscriptions/", json={"kinds": ["job.failed"], "webhook_url": url}
        )
        for url in INSIDE
    }

    wrong = {u: r.status_code for u, r in answers.items() if r.status_code != 400}
    assert wrong == {}
    assert {u: list(r.json()) for u, r in answers.items()} == {u: ["webhook_url"] for u in INSIDE}
    assert not Subscription.objects.filter(user=member.user).exists()


def test_it_checks_a_webhooks_address_again_when_it_calls(attacker, people, settings):
    """A name that resolved to a public address when saved and to the machine itself
    now (DNS rebinding), as the row holds it: the call is refused, nothing reaches the
    receiver listening there."""
    settings.PANEL_WEBHOOK_ALLOW = ["127.0.0.1/32"]  # as the stack's processes have it
    member = people["member"]
    with webhook_receiver(200) as receiver:
        inside = receiver.url.replace("127.0.0.1", "127.0.0.2")
        sub = Subscription.objects.create(
            user=member, kinds=["job.failed"], webhook_url=inside, webhook_secret="s"
        )
        note = Notification.objects.create(user=member, kind="job.failed", title="t")
        made = Delivery.objects.create(subscription=sub, notification=note, channel="webhook")

        assert delivery.attempt(made.pk) is None  # refused for good, not tried again

    made.refresh_from_db()
    assert made.state == DeliveryState.FAILED
    assert "127.0.0.2, a loopback, private or link-local address" in made.log[0]["error"]
    assert receiver.calls == []
