"""The host pages: adding, viewing, refreshing and removing hosts, the dashboard
and the job pages, driven through the UI as a user would."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client
from lxml import html as lxml_html

from panel import jobs, services
from panel.actors import Actor
from panel.choices import JobKind
from panel.models import AuditEvent, Host, Job, Membership, Project
from vms.models import VirtualMachine

from .conftest import (
    CHECKS,
    FAKE_URI,
    UNREACHABLE_URI,
    has_class,
    make_host,
    page_text,
    queued_tasks,
    rows,
    unescaped,
)

pytestmark = pytest.mark.django_db

ADD_URL = "/hosts/add/"


def host_facts_shown(response) -> dict[str, str]:
    """The Host card of the host page: label → value, as displayed."""
    doc = lxml_html.fromstring(response.content.decode())
    shown = {}
    for dt in doc.xpath(f"//dl[{has_class('host-facts')}]/dt"):
        dd = dt.getnext()
        for br in dd.iter("br"):
            br.tail = " " + (br.tail or "")
        value = dd.text_content().replace("\xa0", " ")
        shown[dt.text_content().strip()] = re.sub(r"\s+", " ", value).strip()
    return shown


def check_rows(response) -> list[list[str]]:
    """The Checks table of the host page: one [name, badge, detail] per row."""
    doc = lxml_html.fromstring(response.content.decode())
    return [
        [td.text_content().strip() for td in tr.xpath("td")]
        for tr in doc.xpath(f"//table[{has_class('host-checks')}]//tr")
    ]


def alerts(response) -> list[str]:
    return rows(response, "//div[@role='alert']")


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
    event = AuditEvent.objects.get()
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


# --- the host page -------------------------------------------------------------


def test_it_shows_the_host_facts_and_memory_advice(operator_client, host):
    response = operator_client.get(f"/hosts/{host.pk}/")

    assert response.status_code == 200
    shown = host_facts_shown(response)
    assert "Hostname" not in shown  # where the host is: admins only
    assert shown["libvirt"] == "9.0.0"
    assert shown["Hypervisor (QEMU)"] == "7.2.0"
    assert shown["CPU model"] == "AMD EPYC-Rome (x86_64)"
    assert shown["CPUs"] == "16 — 1 socket, 8 cores, 2 threads per core, 2900 MHz"
    assert shown["NUMA cells"] == "cell 0: 8 CPUs, 64.0 GiB cell 1: 8 CPUs, 64.0 GiB"
    assert shown["Memory"] == "100.0 GiB free of 128.0 GiB"
    assert shown["Domain type"] == "kvm"
    advice = rows(response, f"//p[{has_class('memory-advice')}]")
    assert advice == ["Keep 3.0 GiB for the host itself; give guests at most 125.0 GiB in all."]


def test_it_lists_the_checks_as_pass_warn_fail(operator_client, host):
    response = operator_client.get(f"/hosts/{host.pk}/")

    assert check_rows(response) == [[c["name"], c["status"].upper(), c["detail"]] for c in CHECKS]


def test_it_says_when_a_host_was_never_checked(operator_client):
    host = make_host("fresh", facts={}, checks=[], domain_type="")

    response = operator_client.get(f"/hosts/{host.pk}/")

    text = page_text(response)
    assert "No facts read yet." in text
    assert "Not checked yet: the refresh job runs them." in text
    assert "Unknown until the host answers." in text


def test_it_shows_a_down_host_with_an_alert(operator_client, admin_user):
    host = make_host("kvm02", state="down", last_error="Connection refused by kvm02")
    admin = Client()
    admin.force_login(admin_user)

    response = operator_client.get(f"/hosts/{host.pk}/")
    to_admin = admin.get(f"/hosts/{host.pk}/")

    assert response.status_code == 200
    # The error names the host's address: only admins read it.
    assert alerts(response) == [
        "This host cannot be reached. The facts below are the last ones read."
    ]
    assert alerts(to_admin) == [
        "This host cannot be reached: Connection refused by kvm02. "
        "The facts below are the last ones read."
    ]
    assert host_facts_shown(to_admin)["Hostname"] == "kvm01.example.test"


def test_it_does_not_show_the_down_alert_for_an_up_host(operator_client, host):
    response = operator_client.get(f"/hosts/{host.pk}/")

    assert "cannot be reached" not in page_text(response)


def test_it_offers_refresh_and_remove_only_to_admins(client, admin_user, operator_user, host):
    buttons = f"//form[contains(@action, '/hosts/{host.pk}/')]/button"
    client.force_login(operator_user)
    assert rows(client.get(f"/hosts/{host.pk}/"), buttons) == []

    client.force_login(admin_user)
    assert rows(client.get(f"/hosts/{host.pk}/"), buttons) == ["Refresh", "Remove"]


def add_vm(host: Host, name: str, project: Project | None = None) -> VirtualMachine:
    return VirtualMachine.objects.create(
        id=uuid.uuid4(),
        name=name,
        host=host,
        project=project,
        state="running",
        vcpus=2,
        memory_mib=512,
    )


def test_it_lists_the_hosts_vms_on_its_page(admin_client, host):
    add_vm(host, "web1")
    add_vm(host, "db1")

    response = admin_client.get(f"/hosts/{host.pk}/")

    doc = lxml_html.fromstring(response.content.decode())
    table = [
        [td.text_content().strip() for td in tr.xpath("td")] for tr in doc.xpath("//tr[@data-vm]")
    ]
    assert table == [["db1", "running", "2", "512 MiB"], ["web1", "running", "2", "512 MiB"]]


VMS_OUT_OF_SCOPE = (
    "panel/views/hosts.py host_detail passes host.vms.all() to the page unrestricted, so a "
    "project member sees the names and states of other projects' VMs on that host; it should "
    "be restrict(host.vms.all(), request.user, VIEW) (vms.permissions.visible_vms)."
)


def test_it_lists_only_the_vms_of_the_users_projects_on_the_host_page(operator_client, host):
    add_vm(host, "ours", Project.objects.get(name="team"))
    add_vm(host, "theirs", Project.objects.create(name="other"))

    response = operator_client.get(f"/hosts/{host.pk}/")

    assert rows(response, "//tr[@data-vm]/td[1]") == ["ours"]


VM_COUNT_DOUBLED = (
    "panel/views/hosts.py dashboard/host_list annotate Count('vms') on a queryset that "
    "panel.permissions.restrict() joined through projects_allowed: a user in two projects "
    "that both list the host sees every VM counted twice. Use Count('vms', distinct=True)."
)


def test_it_counts_each_vm_once_for_a_user_in_two_projects(client, plain_user):
    host = make_host("kvm01")
    for name in ("a", "b"):
        project = Project.objects.create(name=name)
        project.allowed_hosts.add(host)
        Membership.objects.create(user=plain_user, project=project, role="member")
    add_vm(host, "web1", Project.objects.get(name="a"))
    client.force_login(plain_user)

    card = rows(client.get("/"), f"//div[{has_class('host-card')}]")[0]
    listed = rows(client.get("/hosts/"), "//tbody/tr/td[4]")  # no URI column for members

    assert "1 VM · domain type kvm" in card
    assert listed == ["1"]


def test_it_answers_404_for_an_unknown_host(admin_client):
    assert admin_client.get("/hosts/999/").status_code == 404


def test_it_hides_hosts_from_a_user_in_no_project(user_client, host):
    assert user_client.get(f"/hosts/{host.pk}/").status_code == 404
    dashboard = page_text(user_client.get("/"))
    assert "No hosts yet." in dashboard
    assert "Add one" not in dashboard


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
    assert alerts(response) == ["Your role does not allow 'manage' on this host."]
    assert not Job.objects.exists()
    event = AuditEvent.objects.get()
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
    event = AuditEvent.objects.get()
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


# --- dashboard and jobs ----------------------------------------------------------------


def test_it_shows_a_card_per_host_on_the_dashboard(operator_client):
    make_host("kvm01")
    make_host("kvm02", state="down", domain_type="", checks=[])

    response = operator_client.get("/")

    assert response.status_code == 200
    cards = rows(response, f"//div[{has_class('host-card')}]")
    assert len(cards) == 2
    assert cards[0].startswith("kvm01 up")
    assert "0 VMs · domain type kvm" in cards[0]
    assert "Memory: 100.0 GiB free of 128.0 GiB" in cards[0]
    assert "Checks: 1 pass, 1 warn, 1 fail" in cards[0]
    assert cards[1].startswith("kvm02 down")
    assert "domain type not checked yet" in cards[1]
    assert "Checks: 0 pass, 0 warn, 0 fail" in cards[1]


def test_it_invites_an_admin_to_add_the_first_host(admin_client):
    response = admin_client.get("/")

    assert "No hosts yet. Add one." in page_text(response)


def test_it_lists_jobs_and_shows_one(admin_client, admin_user, host):
    job = jobs.create_job(
        JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(admin_user), host=host
    )
    jobs.report(job.pk, progress=30, message="Reading domains", log_line="connected")

    listing = admin_client.get("/jobs/")
    detail = admin_client.get(f"/jobs/{job.pk}/")

    assert listing.status_code == 200
    table = rows(listing, "//tbody/tr")
    assert len(table) == 1
    assert table[0].startswith(f"{job.pk} Host refresh host:kvm01 queued 30 % admin")
    assert detail.status_code == 200
    text = page_text(detail)
    assert f"Host refresh #{job.pk}" in text
    assert "host:kvm01 · started by admin" in text
    assert "Reading domains" in text
    assert re.search(r"\d\d:\d\d:\d\d connected", text)
    assert rows(detail, "//form[contains(@action, '/cancel/')]/button") == ["Cancel"]


def test_it_hides_an_admins_job_from_a_plain_user(client, admin_user, plain_user, host):
    job = jobs.create_job(
        JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(admin_user), host=host
    )
    own = jobs.create_job(
        JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(plain_user), host=host
    )
    client.force_login(plain_user)

    listing = client.get("/jobs/")

    links = rows(listing, "//tbody/tr/td[1]/a")
    assert links == [str(own.pk)]
    assert client.get(f"/jobs/{job.pk}/").status_code == 404
    assert client.get(f"/jobs/{own.pk}/").status_code == 200
