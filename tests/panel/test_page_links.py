"""No dead ends: VM names on a host's and a project's page lead to the VM, and an admin
sent to an empty "new VM from a template" page is led to the templates page, where a
member is told whom to ask."""

from __future__ import annotations

from lxml import html

from panel.models import Membership, Project

from .conftest import make_host
from .test_hosts_pages import add_vm


def links(response, xpath: str) -> dict[str, str]:
    """{text: href} of the links at xpath."""
    doc = html.fromstring(response.content.decode())
    return {a.text_content().strip(): a.get("href") for a in doc.xpath(xpath)}


def test_vm_names_on_host_and_project_pages_link_to_the_vm(admin_client):
    host = make_host("kvm01")
    project = Project.objects.create(name="team")
    web, db = add_vm(host, "web1", project), add_vm(host, "db1")

    on_host = links(admin_client.get(f"/hosts/{host.pk}/"), "//tr[@data-vm]/td[1]/a")
    on_project = links(admin_client.get(f"/projects/{project.pk}/"), "//main//tbody/tr/td[1]/a")

    assert on_host == {"web1": f"/vms/{web.pk}/", "db1": f"/vms/{db.pk}/"}
    assert on_project == {"web1": f"/vms/{web.pk}/"}


def test_a_project_page_lists_only_the_vms_its_member_may_see(client, plain_user):
    host = make_host("kvm01")
    project = Project.objects.create(name="team")
    Membership.objects.create(user=plain_user, project=project, role="viewer")
    vm = add_vm(host, "web1", project)
    client.force_login(plain_user)

    listed = links(client.get(f"/projects/{project.pk}/"), "//main//tbody/tr/td[1]/a")

    assert listed == {"web1": f"/vms/{vm.pk}/"}
    assert client.get(listed["web1"]).status_code == 200


def test_an_empty_template_page_leads_an_admin_to_the_templates_and_tells_a_member_whom_to_ask(
    admin_client, client, plain_user
):
    admin_page = admin_client.get("/vms/new/from-template/")
    assert links(admin_page, "//main//a") == {"Make one on the templates page": "/vms/templates/"}
    assert "ask an administrator" not in admin_page.content.decode()

    Membership.objects.create(user=plain_user, project=Project.objects.create(name="team"))
    client.force_login(plain_user)
    member_page = client.get("/vms/new/from-template/").content.decode()
    assert "ask an administrator" in member_page and "/vms/templates/" not in member_page
