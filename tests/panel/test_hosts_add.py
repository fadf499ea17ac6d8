"""Adding a host through the UI as a user would: a reachable host is added and its
refresh queued; a bad or unreachable URI, a duplicate name or URI and a missing name are
refused with the reason; only admins may add hosts, and anonymous visitors go to login."""

from __future__ import annotations

import pytest

from panel.choices import JobKind
from panel.models import AuditEvent, Host, Job

from .conftest import (
    FAKE_URI,
    UNREACHABLE_URI,
    alerts,
    has_class,
    make_host,
    page_text,
    queued_tasks,
    rows,
    unescaped,
)

pytestmark = pytest.mark.django_db

ADD_URL = "/hosts/add/"


# --- adding a host -----------------------------------------------------------


def test_it_adds_a_reachable_host_and_queues_its_refresh(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(ADD_URL, {"name": "fake1", "uri": FAKE_URI})

    host = Host.objects.get(name="fake1")
    assert response.status_code == 302
    assert response.url == f"/hosts/{host.pk}/"
    assert host.uri == FAKE_URI
    assert host.state == "up"
    assert host.facts["driver"] == "TEST"
    assert host.facts["cpus"] == 16
    assert host.facts["memory_total_bytes"] > 0
    assert host.facts["reserved_memory_bytes"] == 2 * 1024**3

    event = AuditEvent.objects.get(action="host.add")
    assert (event.result, event.username, event.target) == ("success", "admin", "fake1")
    assert event.source_ip == "127.0.0.1"

    job = Job.objects.get(host=host)
    assert (job.kind, job.state, job.user) == (JobKind.HOST_REFRESH, "queued", admin_user)
    tasks = queued_tasks(callbacks)
    assert tasks == [("panel.refresh_host", (job.pk,))]

    page = admin_client.get(response.url)
    assert "Host fake1 added; its checks are running." in alerts(page)
    assert f"Host refresh #{job.pk}" in page_text(page)


@pytest.mark.parametrize(
    ("uri", "problem", "advice"),
    [
        ("http://example", "The scheme 'http' is not supported.", "Use one of: qemu, "),
        ("not a uri", "'not a uri' is not a libvirt URI.", "Use a form like qemu:///system"),
    ],
)
def test_it_refuses_a_bad_uri_and_says_why(admin_client, uri, problem, advice):
    response = admin_client.post(ADD_URL, {"name": "bad", "uri": uri})

    assert response.status_code == 400
    errors = rows(response, f"//div[{has_class('invalid-feedback')}]")
    assert len(errors) == 1
    assert errors[0].startswith(problem)
    assert advice in errors[0]
    assert not Host.objects.exists()
    assert not Job.objects.exists()


def test_it_refuses_an_unreachable_host_and_audits_the_failure(
    admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(ADD_URL, {"name": "gone", "uri": UNREACHABLE_URI})

    assert response.status_code == 400
    error = rows(response, f"//div[{has_class('invalid-feedback')}]")[0]
    assert error.startswith(f"Could not connect to {UNREACHABLE_URI}")
    assert "Connection refused" in error
    assert not Host.objects.exists()
    assert not Job.objects.exists()
    assert queued_tasks(callbacks) == []
    event = AuditEvent.objects.get(action="host.add")
    assert (event.result, event.target) == ("failure", UNREACHABLE_URI)
    assert "Connection refused" in event.detail


def test_it_refuses_a_duplicate_host_name(admin_client):
    make_host("kvm01")

    response = admin_client.post(ADD_URL, {"name": "kvm01", "uri": FAKE_URI})

    assert response.status_code == 400
    assert "A host named 'kvm01' already exists: pick another name." in unescaped(response)
    assert Host.objects.count() == 1


def test_it_refuses_a_uri_that_is_already_registered(admin_client):
    make_host("kvm01", uri=FAKE_URI)

    response = admin_client.post(ADD_URL, {"name": "again", "uri": FAKE_URI})

    assert response.status_code == 400
    assert f"The host at {FAKE_URI} is already registered." in unescaped(response)
    assert list(Host.objects.values_list("name", flat=True)) == ["kvm01"]


def test_it_asks_for_a_name(admin_client):
    response = admin_client.post(ADD_URL, {"name": "  ", "uri": FAKE_URI})

    assert response.status_code == 400
    assert "This field is required." in page_text(response)
    assert not Host.objects.exists()


def test_it_shows_the_add_form_to_an_admin(admin_client):
    response = admin_client.get(ADD_URL)

    assert response.status_code == 200
    assert "Connect and add" in page_text(response)


def test_it_refuses_add_host_to_a_non_admin_and_audits_it(operator_client):
    response = operator_client.post(ADD_URL, {"name": "fake1", "uri": FAKE_URI})

    assert response.status_code == 403
    assert alerts(response) == ["Only administrators can add hosts."]
    assert not Host.objects.exists()
    event = AuditEvent.objects.exclude(action="login").get()  # the client's own login
    assert (event.result, event.username, event.action) == ("denied", "alice", "POST /hosts/add/")
    assert event.detail == "Only administrators can add hosts."


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_sends_an_anonymous_visitor_to_login(client, method):
    data = {"name": "fake1", "uri": FAKE_URI} if method == "post" else None
    response = getattr(client, method)(ADD_URL, data)

    assert response.status_code == 302
    assert response.url == f"/login/?next={ADD_URL}"
    assert not Host.objects.exists()
    assert not AuditEvent.objects.exists()
