"""One delivery attempt at a time against a real receiver on 127.0.0.1: given up after
the last attempt, a redirect not followed, a crash told as such."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from panel.choices import DeliveryState, NotificationKind
from panel.models import Delivery, Host, Notification
from panel.notifications import delivery
from vms.models import VirtualMachine
from vms.services.alerts import domain_stopped

from .conftest import subscribe
from .receivers import webhook_receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def webhook_delivery(people, settings):
    settings.PANEL_WEBHOOK_ALLOW = ["127.0.0.1/32"]
    settings.PANEL_NOTIFY_ATTEMPTS = 3
    settings.PANEL_NOTIFY_RETRY_SECONDS = 2

    def make(url: str) -> Delivery:
        sub = subscribe(people["member"], "job.failed", webhook_url=url, webhook_secret="s")
        note = Notification.objects.create(user=people["member"], kind="job.failed", title="t")
        return Delivery.objects.create(subscription=sub, notification=note, channel="webhook")

    return make


def test_it_tries_again_with_growing_pauses_then_gives_up(webhook_delivery):
    with webhook_receiver(503) as receiver:
        made = webhook_delivery(receiver.url)
        waits = []
        for _ in range(4):
            waits.append(delivery.attempt(made.pk))
            Delivery.objects.update(next_try=timezone.now())  # the pause is over

    made.refresh_from_db()
    assert waits == [2.0, 4.0, None, None]  # the fourth finds it over: nothing sent
    assert len(receiver.calls) == 3
    assert (made.state, made.attempts) == (DeliveryState.FAILED, 3)
    assert [a["error"] for a in made.log] == ["the receiver answered 503"] * 3


def test_it_sends_nothing_before_the_next_try_nor_twice_for_one_attempt(webhook_delivery):
    with webhook_receiver(500) as receiver:
        made = webhook_delivery(receiver.url)
        first = delivery.attempt(made.pk)
        early = delivery.attempt(made.pk)  # a message sent again, before the pause ends

    made.refresh_from_db()
    assert (first, early) == (2.0, None)
    assert len(receiver.calls) == 1
    assert made.attempts == 1


def test_it_sends_again_the_deliveries_no_worker_took(webhook_delivery):
    lost, waiting, fresh, sent = (webhook_delivery("http://127.0.0.1:9/") for _ in range(4))
    long_ago = timezone.now() - timedelta(minutes=5)
    Delivery.objects.filter(pk=lost.pk).update(created=long_ago)
    Delivery.objects.filter(pk=waiting.pk).update(
        created=long_ago,
        state=DeliveryState.RETRYING,
        next_try=timezone.now() + timedelta(seconds=30),
    )
    Delivery.objects.filter(pk=sent.pk).update(created=long_ago, state=DeliveryState.SENT)

    assert delivery.resend_lost(60) == [lost.pk]


def test_it_does_not_follow_a_redirect(webhook_delivery):
    with webhook_receiver(302) as receiver:
        made = webhook_delivery(receiver.url)
        delivery.attempt(made.pk)

    made.refresh_from_db()
    assert len(receiver.calls) == 1
    assert made.log[0]["error"] == "the receiver answered 302"
    assert made.state == DeliveryState.RETRYING


def test_it_tells_a_crash_whoever_stopped_the_vm(people, alpha):
    host = Host.objects.create(name="kvm10", uri="qemu+tcp://127.0.0.1:1/system", state="up")
    vm = VirtualMachine.objects.create(
        id="0d7a3c57-1f0e-4c1e-9a57-3b0f2f8f0a10",
        name="alpha-db",
        host=host,
        project=alpha,
        state="running",
    )
    subscribe(people["member"], NotificationKind.VM_CRASHED)
    subscribe(people["outsider"], NotificationKind.VM_CRASHED)

    domain_stopped(host, str(vm.pk), "crashed")

    [note] = Notification.objects.all()
    assert (note.user, note.title) == (people["member"], "VM alpha-db crashed on kvm10")
