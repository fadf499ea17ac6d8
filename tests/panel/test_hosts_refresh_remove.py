"""Refreshing and removing a host through the UI as a user would: a refresh is queued
and audited, a second one refused while the first is under way; only admins may refresh
or remove, GET is refused, anonymous visitors go to login; and a refresh's checks on the
real local libvirtd settle the domain type."""

from __future__ import annotations

import pytest

from panel import jobs, services
from panel.actors import Actor
from panel.choices import JobKind
from panel.models import AuditEvent, Host, Job

from .conftest import alerts, page_text, queued_tasks

pytestmark = pytest.mark.django_db


# --- refresh -------------------------------------------------------------------


def test_it_queues_a_refresh(admin_client, admin_user, host, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(f"/hosts/{host.pk}/refresh/")

    assert response.status_code == 302
    assert response.url == f"/hosts/{host.pk}/"
    job = Job.objects.get(host=host)
    assert (job.kind, job.state, job.user, job.target) == (
        JobKind.HOST_REFRESH,
        "queued",
        admin_user,
        "host:kvm01",
    )
    assert queued_tasks(callbacks) == [("panel.refresh_host", (job.pk,))]
    event = AuditEvent.objects.get(action="host.refresh")
    assert (event.result, event.target, event.detail) == ("success", "kvm01", f"job #{job.pk}")

    page = admin_client.get(response.url)
    assert f"Refresh of kvm01 started (job #{job.pk})." in alerts(page)


def test_it_refuses_a_second_refresh_while_one_is_queued(
    admin_client, admin_user, host, django_capture_on_commit_callbacks
):
    first = services.refresh_host(host, actor=Actor(admin_user))

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(f"/hosts/{host.pk}/refresh/", follow=True)

    assert response.status_code == 200
    assert f"A refresh of kvm01 is already under way (job #{first.pk}); wait for it." in alerts(
        response
    )
    assert list(Job.objects.values_list("pk", flat=True)) == [first.pk]
    assert queued_tasks(callbacks) == []


def test_it_allows_a_new_refresh_once_the_last_one_finished(admin_client, admin_user, host):
    first = services.refresh_host(host, actor=Actor(admin_user))
    with jobs.running(first.pk):
        pass

    response = admin_client.post(f"/hosts/{host.pk}/refresh/")

    assert response.status_code == 302
    assert Job.objects.filter(host=host).count() == 2


def test_it_rejects_get_on_refresh(admin_client, host):
    response = admin_client.get(f"/hosts/{host.pk}/refresh/")

    assert response.status_code == 405
    assert not Job.objects.exists()


def test_it_refuses_refresh_to_a_non_admin_and_audits_it(operator_client, host):
    response = operator_client.post(f"/hosts/{host.pk}/refresh/")

    assert response.status_code == 403
    assert alerts(response) == ["Your role does not allow 'administer' on this host."]
    assert not Job.objects.exists()
    event = AuditEvent.objects.exclude(action="login").get()  # the client's own login
    assert (event.result, event.username, event.action) == (
        "denied",
        "alice",
        f"POST /hosts/{host.pk}/refresh/",
    )


def test_it_answers_404_to_a_refresh_of_a_host_out_of_scope(user_client, host):
    response = user_client.post(f"/hosts/{host.pk}/refresh/")

    assert response.status_code == 404
    assert not Job.objects.exists()


def test_it_sends_an_anonymous_refresh_to_login(client, host):
    response = client.post(f"/hosts/{host.pk}/refresh/")

    assert response.status_code == 302
    assert response.url.startswith("/login/")
    assert not Job.objects.exists()


def test_it_answers_404_when_refreshing_an_unknown_host(admin_client):
    assert admin_client.post("/hosts/999/refresh/").status_code == 404


# --- delete --------------------------------------------------------------------


def test_it_removes_a_host(admin_client, host):
    response = admin_client.post(f"/hosts/{host.pk}/delete/", follow=True)

    assert response.redirect_chain == [("/hosts/", 302)]
    assert not Host.objects.exists()
    assert "Host kvm01 removed from the panel." in alerts(response)
    assert "No hosts." in page_text(response)
    event = AuditEvent.objects.get(action="host.delete")
    assert (event.result, event.target, event.detail) == ("success", "kvm01", host.uri)


def test_it_refuses_delete_to_a_non_admin_and_audits_it(operator_client, host):
    response = operator_client.post(f"/hosts/{host.pk}/delete/")

    assert response.status_code == 403
    assert Host.objects.filter(pk=host.pk).exists()
    event = AuditEvent.objects.exclude(action="login").get()  # the client's own login
    assert (event.result, event.username, event.action) == (
        "denied",
        "alice",
        f"POST /hosts/{host.pk}/delete/",
    )


def test_it_rejects_get_on_delete(admin_client, host):
    response = admin_client.get(f"/hosts/{host.pk}/delete/")

    assert response.status_code == 405
    assert Host.objects.filter(pk=host.pk).exists()


def test_it_sends_an_anonymous_delete_to_login(client, host):
    response = client.post(f"/hosts/{host.pk}/delete/")

    assert response.status_code == 302
    assert response.url.startswith("/login/")
    assert Host.objects.filter(pk=host.pk).exists()


# --- the real local libvirtd -------------------------------------------------------


@pytest.mark.libvirt
def test_it_settles_the_domain_type_by_whether_a_kvm_guest_ran(admin_user):
    host = Host.objects.create(name="local", uri="qemu:///system")

    services.reconcile_host(host, checks=True)

    host.refresh_from_db()
    checks = {c["name"]: c for c in host.checks}
    assert host.state == "up"
    assert host.checked_at is not None
    assert host.facts["driver"] == "QEMU"
    assert host.facts["memory_total_bytes"] > 0
    assert {c["status"] for c in host.checks} <= {"pass", "warn", "fail"}
    assert all(c["detail"] for c in host.checks)
    assert "KVM device" in checks
    kvm_ran = checks.get("KVM guests run", {}).get("status") == "pass"
    assert host.domain_type == ("kvm" if kvm_ran else "qemu")
    expected_type_check = "pass" if kvm_ran else "warn"
    assert checks["Domain type"]["status"] == expected_type_check
    # On this machine nested KVM does not run guests: the probe must say so.
    assert host.domain_type == "qemu"
    assert checks["KVM guests run"]["status"] == "fail"
