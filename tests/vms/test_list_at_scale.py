"""What keeps the VM list, its API and the dashboard fast with many hosts and VMs, as a
user sees it: a search finds names and id prefixes (with or without dashes), the list
opens live sockets only for the hosts of the rows it shows, the dashboard shows the
hosts that need attention and counts the rest, and on PostgreSQL the name search has
its index."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from lxml import html as lxml_html

from panel.models import Host
from vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


def make_hosts(count: int, down: set[int] = frozenset()) -> list[Host]:
    return [
        Host.objects.create(
            name=f"kvm{n:02d}",
            uri=f"qemu+ssh://root@kvm{n:02d}.example.test/system",
            state="down" if n in down else "up",
        )
        for n in range(1, count + 1)
    ]


def make_vm(host: Host, name: str, project=None, vm_id: str | None = None) -> VirtualMachine:
    return VirtualMachine.objects.create(
        id=uuid.UUID(vm_id) if vm_id else uuid.uuid4(),
        name=name,
        host=host,
        project=project,
        state="running",
    )


def listed(response) -> list[str]:
    doc = lxml_html.fromstring(response.content.decode())
    return [a.text for a in doc.xpath("//tr[@data-vm]/td[2]/a")]


def test_the_search_finds_names_in_any_case_and_ids_by_their_start(client_for, api_for, alpha):
    host = make_hosts(1)[0]
    web = make_vm(host, "Web-Front", alpha, "3f2a9c1e-0000-4000-8000-000000000001")
    make_vm(host, "db-main", alpha, "77aa0000-0000-4000-8000-000000000002")
    page = client_for("member")
    api = api_for("member")

    assert listed(page.get("/vms/?q=web")) == ["Web-Front"]
    assert listed(page.get("/vms/?q=3F2A9")) == ["Web-Front"]
    assert listed(page.get("/vms/?q=3f2a9c1e-00")) == ["Web-Front"]
    assert listed(page.get(f"/vms/?q={web.pk}")) == ["Web-Front"]
    assert listed(page.get("/vms/?q=zz-nothing")) == []
    found = api.get("/api/v1/vms/?search=3f2a9c1e-0").json()
    assert [vm["name"] for vm in found["results"]] == ["Web-Front"]
    found = api.get("/api/v1/vms/?search=MAIN").json()
    assert [vm["name"] for vm in found["results"]] == ["db-main"]
    # Outside the member's projects nothing is found, by name or by id.
    other = make_vm(host, "web-theirs", None, "3f2a9c1e-0000-4000-8000-0000000000ff")
    assert listed(page.get("/vms/?q=3f2a9c1e")) == ["Web-Front"]
    assert api.get(f"/api/v1/vms/?search={other.pk}").json()["count"] == 0


def test_the_list_opens_one_live_socket_for_the_vms_of_its_rows(client_for, alpha):
    hosts = make_hosts(30)
    four = make_vm(hosts[3], "on-four", alpha)
    eight = make_vm(hosts[7], "on-eight", alpha)

    doc = lxml_html.fromstring(client_for("admin").get("/vms/").content.decode())

    assert doc.xpath("//*[@data-host-ws]") == []
    assert doc.xpath("//*[@data-vms-ws]/@data-vms-ws") == [f"/ws/vm-rows/?ids={eight.pk},{four.pk}"]
    # A page with no rows opens none.
    doc = lxml_html.fromstring(client_for("admin").get("/vms/?q=nothing-such").content.decode())
    assert doc.xpath("//*[@data-vms-ws]") == []
    # The host filter still offers every host.
    assert len(doc.xpath("//select[@name='host']/option[@value!='']")) == 30


def test_the_dashboard_shows_hosts_that_are_not_up_and_counts_the_rest(client_for, alpha):
    hosts = make_hosts(40, down={17, 33})
    for host in hosts[:5]:
        make_vm(host, f"vm-on-{host.name}", alpha)

    doc = lxml_html.fromstring(client_for("admin").get("/").content.decode())

    cards = [
        c.xpath("string(.//h2)").strip() for c in doc.xpath("//*[contains(@class,'host-card')]")
    ]
    assert len(cards) == 12
    assert {"kvm17", "kvm33"} <= set(cards)
    assert cards == sorted(cards)
    summary = " ".join(doc.xpath("string(//*[@data-host-summary])").split())
    assert summary.startswith("40 hosts (2 not up), 5 VMs.")
    assert doc.xpath("//*[@data-host-summary]//a/@href") == ["/hosts/"]
    # One live socket per card shown, not per host.
    assert len(doc.xpath("//*[@data-host-ws]")) == 12


def test_the_dashboard_counts_only_the_vms_a_member_may_see(client_for, alpha, beta):
    host = make_hosts(1)[0]
    make_vm(host, "ours", alpha)
    make_vm(host, "theirs", beta)

    doc = lxml_html.fromstring(client_for("member").get("/").content.decode())

    card = " ".join(doc.xpath("string(//*[contains(@class,'host-card')])").split())
    assert "1 VM ·" in card


@pytest.mark.postgres_only
def test_postgresql_searches_names_through_the_trigram_index():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'vms_vm_name_upper_trgm'")
        row = cursor.fetchone()
    assert row is not None, "the VM search has no index: migration vms 0010 did not create it"
    assert "gin_trgm_ops" in row[0]
    host = make_hosts(1)[0]
    VirtualMachine.objects.bulk_create(
        VirtualMachine(id=uuid.uuid4(), name=f"vm-{n:05d}", host=host) for n in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE vms_virtualmachine")
        # At this size reading the table is cheaper; at a hundred thousand rows it is not.
        # What matters here: the index matches the query as Django writes it.
        cursor.execute("SET LOCAL enable_seqscan = off")
    # The search as the list page and the API run it (their count, unordered).
    plan = VirtualMachine.objects.filter(name__icontains="vm-0123").order_by().explain()
    assert "vms_vm_name_upper_trgm" in plan, plan
