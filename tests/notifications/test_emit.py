"""Who hears of what: a failed job, a failed backup, a host going down and back, a
project passing 90 % of a quota; repeats held back into one summary."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from panel import jobs, quotas
from panel.actors import Actor
from panel.choices import DeliveryChannel, HostState, JobKind, NotificationKind
from panel.models import Delivery, Host, Notification, Quota
from panel.notifications import throttle
from panel.services import set_host_state

from .conftest import subscribe

pytestmark = pytest.mark.django_db


def titles(user) -> list[str]:
    return list(Notification.objects.filter(user=user).values_list("title", flat=True))


def failed_job(people, alpha, kind=JobKind.VM_SNAPSHOT_CREATE, target="vm:abc"):
    job = jobs.create_job(kind, target=target, actor=Actor(people["member"]), project=alpha)
    jobs.fail(job.pk, "The pool is full: free some space and try again.")
    return job


def test_it_tells_a_failed_job_to_those_who_see_it_and_to_no_one_else(people, alpha, subscribe_all):
    subscribe_all()

    job = failed_job(people, alpha)

    told = {n.user.username for n in Notification.objects.select_related("user")}
    assert told == {"admin", "operator", "member", "viewer"}  # not the outsider
    note = Notification.objects.get(user=people["member"])
    assert note.kind == NotificationKind.JOB_FAILED
    assert note.title == f"{job} failed on vm:abc"
    assert note.body == "The pool is full: free some space and try again."
    assert note.link == f"/jobs/{job.pk}/"
    assert note.read_at is None


def test_it_tells_a_failed_backup_as_a_failed_backup(people, alpha):
    subscribe(people["member"], NotificationKind.BACKUP_FAILED, project=alpha, email=True)
    subscribe(people["viewer"], NotificationKind.JOB_FAILED)

    failed_job(people, alpha, kind=JobKind.VM_BACKUP)

    assert titles(people["viewer"]) == []
    [note] = Notification.objects.filter(user=people["member"])
    assert note.kind == NotificationKind.BACKUP_FAILED
    assert list(Delivery.objects.values_list("channel", "notification")) == [
        (DeliveryChannel.EMAIL, note.pk)
    ]


def test_it_keeps_a_subscription_to_one_project_to_that_project(people, alpha, beta):
    subscribe(people["member"], NotificationKind.JOB_FAILED, project=beta)

    failed_job(people, alpha)

    assert titles(people["member"]) == []


def test_it_tells_hosts_going_down_and_back_to_administrators_only(people):
    host = Host.objects.create(name="kvm07", uri="qemu+tcp://127.0.0.1:1/system", state="up")
    subscribe(people["admin"], NotificationKind.HOST_DOWN, NotificationKind.HOST_UP)
    # Made without the service's check, which refuses host kinds to others.
    subscribe(people["operator"], NotificationKind.HOST_DOWN, NotificationKind.HOST_UP)

    set_host_state(host, HostState.DOWN, "Connection refused")
    set_host_state(host, HostState.DOWN, "Connection refused")  # still down: nothing new
    set_host_state(host, HostState.UP)

    assert titles(people["admin"]) == ["Host kvm07 came back", "Host kvm07 went down"]
    assert titles(people["operator"]) == []


def test_it_holds_back_a_flapping_host_and_then_sends_one_summary(people):
    host = Host.objects.create(name="kvm08", uri="qemu+tcp://127.0.0.1:1/system", state="up")
    subscribe(people["admin"], NotificationKind.HOST_DOWN)

    for _ in range(5):
        set_host_state(host, HostState.DOWN, "Connection refused")
        set_host_state(host, HostState.UP)

    assert titles(people["admin"]) == ["Host kvm08 went down"]
    # The window has not ended: no summary yet.
    assert throttle.summarize(NotificationKind.HOST_DOWN, f"host:{host.pk}") == []

    later = timezone.now() + throttle.window() + timedelta(seconds=1)
    [summary] = throttle.summarize(NotificationKind.HOST_DOWN, f"host:{host.pk}", now=later)

    assert summary.summary
    assert summary.title == "Host kvm08 went down: 4 more times in 10 minutes"
    assert titles(people["admin"])[0] == summary.title
    # Told once: a second pass finds nothing left to tell.
    assert throttle.summarize(NotificationKind.HOST_DOWN, f"host:{host.pk}", now=later) == []
    # After the window, the next fall is told again at once.
    Notification.objects.update(created=timezone.now() - throttle.window() * 2)
    set_host_state(host, HostState.DOWN, "Connection refused")
    assert titles(people["admin"])[0] == "Host kvm08 went down"


def test_it_tells_a_project_passing_90_percent_of_a_quota_once(people, alpha):
    Quota.objects.update_or_create(project=alpha, defaults={"vcpus": 10})
    subscribe(people["member"], NotificationKind.QUOTA_NEAR, project=alpha)
    subscribe(people["outsider"], NotificationKind.QUOTA_NEAR)

    with transaction.atomic():
        quotas.reserve(alpha, vcpus=8)  # 80 %: nothing
    assert titles(people["member"]) == []
    with transaction.atomic():
        quotas.reserve(alpha, vcpus=9)  # 90 %

    assert titles(people["member"]) == ["Project alpha uses 9 of 10 vCPUs"]
    assert titles(people["outsider"]) == []


def test_it_tells_nothing_of_a_refused_reservation(people, alpha):
    Quota.objects.update_or_create(project=alpha, defaults={"vcpus": 10})
    subscribe(people["member"], NotificationKind.QUOTA_NEAR, project=alpha)

    with pytest.raises(quotas.QuotaExceeded), transaction.atomic():
        quotas.reserve(alpha, vcpus=9)
        raise quotas.QuotaExceeded("the request failed after the check")

    assert titles(people["member"]) == []
