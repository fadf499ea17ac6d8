"""The host pages, the dashboard and the job pages, driven through the UI as a user
would: a host's facts, memory advice and checks, a down host, its VMs (only those of the
user's projects, each counted once), hosts out of scope; a card per host on the
dashboard; the job list and a job's page."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client
from lxml import html as lxml_html

from panel import jobs
from panel.actors import Actor
from panel.choices import JobKind
from panel.models import Host, Membership, Project
from vms.models import VirtualMachine

from .conftest import CHECKS, alerts, has_class, make_host, page_text, rows

pytestmark = pytest.mark.django_db


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
    listed = rows(client.get("/hosts/"), "//main//tbody/tr/td[4]")  # no URI column for members

    assert "1 VM · domain type kvm" in card
    assert listed == ["1"]


def test_it_answers_404_for_an_unknown_host(admin_client):
    assert admin_client.get("/hosts/999/").status_code == 404


def test_it_hides_hosts_from_a_user_in_no_project(user_client, host):
    assert user_client.get(f"/hosts/{host.pk}/").status_code == 404
    dashboard = page_text(user_client.get("/"))
    assert "No hosts yet." in dashboard
    assert "Add one" not in dashboard


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
    table = rows(listing, "//main//tbody/tr")
    assert len(table) == 1
    assert table[0].startswith(f"{job.pk} Host refresh kvm01 queued 30 % admin")
    assert detail.status_code == 200
    text = page_text(detail)
    assert f"Host refresh #{job.pk}" in text
    assert "kvm01 · started by admin" in text
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

    links = rows(listing, "//main//tbody/tr/td[1]/a")
    assert links == [str(own.pk)]
    assert client.get(f"/jobs/{job.pk}/").status_code == 404
    assert client.get(f"/jobs/{own.pk}/").status_code == 200
