"""The sidebar's resource tree: on every signed-in page (not the consoles), the hosts and
projects the user sees; a host's branch, fetched when opened, lists the VMs, pools and
networks the user may see there, and a link to the rest past thirty VMs."""

from __future__ import annotations

import uuid

from django.test import Client
from lxml import html

from networking.models import Network
from panel.models import Membership, Project
from storage.models import StoragePool
from vms.models import VirtualMachine

from .conftest import make_host
from .test_hosts_pages import add_vm


def tree(response) -> dict[str, list[str]]:
    """{section heading: link texts} of the sidebar."""
    doc = html.fromstring(response.content.decode())
    sections: dict[str, list[str]] = {}
    for heading in doc.xpath("//nav[@aria-label='Resources']/p[@data-tree-section]"):
        items = heading.getnext()
        sections[heading.text_content().strip()] = [
            a.text_content().strip() for a in items.xpath(".//a")
        ]
    return sections


def branch(client, host) -> list[str]:
    response = client.get(f"/vms/tree/hosts/{host.pk}/")
    assert response.status_code == 200
    doc = html.fromstring(response.content.decode())
    return [a.text_content().strip() for a in doc.xpath("//a")]


def test_the_tree_shows_each_user_the_hosts_and_projects_they_see(client, admin_user, plain_user):
    ours, theirs = make_host("kvm01"), make_host("kvm02")
    team = Project.objects.create(name="team")
    team.allowed_hosts.add(ours)
    Project.objects.create(name="other")
    Membership.objects.create(user=plain_user, project=team, role="member")
    client.force_login(plain_user)

    assert tree(client.get("/")) == {"Hosts": ["kvm01"], "Projects": ["team"]}
    admin = Client()
    admin.force_login(admin_user)
    assert tree(admin.get("/vms/")) == {
        "Hosts": ["kvm01", "kvm02"],
        "Projects": ["other", "team"],
    }
    assert client.get(f"/vms/tree/hosts/{theirs.pk}/").status_code == 404


def test_a_hosts_branch_lists_only_what_the_user_may_see_there(client, plain_user):
    host = make_host("kvm01")
    team, other = Project.objects.create(name="team"), Project.objects.create(name="other")
    team.allowed_hosts.add(host)
    Membership.objects.create(user=plain_user, project=team, role="viewer")
    add_vm(host, "ours", team)
    add_vm(host, "theirs", other)
    pool = StoragePool.objects.create(host=host, name="images", state="active")
    StoragePool.objects.create(host=host, name="private")
    team.allowed_pools.add(pool)
    lan = Network.objects.create(host=host, name="lan", active=True)
    Network.objects.create(host=host, name="dmz", active=True)
    team.allowed_networks.add(lan)
    client.force_login(plain_user)

    shown = branch(client, host)

    assert "ours" in shown and "theirs" not in shown
    assert "images" in shown and "private" not in shown
    assert "lan" in shown and "dmz" not in shown


def test_a_branch_lists_thirty_vms_and_links_to_the_rest(
    admin_client, django_assert_max_num_queries
):
    host = make_host("kvm01")
    VirtualMachine.objects.bulk_create(
        VirtualMachine(id=uuid.uuid4(), name=f"vm-{n:02}", host=host) for n in range(33)
    )

    with django_assert_max_num_queries(8):
        shown = branch(admin_client, host)

    assert [name for name in shown if name.startswith("vm-")] == [f"vm-{n:02}" for n in range(30)]
    assert shown[30] == "3 more…", shown[30:]


def test_the_consoles_have_no_tree(admin_client):
    host = make_host("kvm01")
    vm = add_vm(host, "web1")

    for kind in ("serial", "vnc"):
        page = admin_client.get(f"/vms/{vm.pk}/console/{kind}/")
        assert page.status_code == 200
        assert tree(page) == {}
    assert "Hosts" in tree(admin_client.get(f"/vms/{vm.pk}/"))
