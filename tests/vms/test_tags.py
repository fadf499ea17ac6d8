"""A VM's tags: set on its page's Options tab or through the API, checked (bad ones
change nothing and say why), allowed to those who may change the VM, audited, pushed to
the browsers watching it, shown as links on the VM's page and in the list, and filtered
on in the list and the API without showing another project's VMs. Rows are made
directly, except in the last test, which tags a real guest and reads its domain."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.db import connection
from django.test.utils import CaptureQueriesContext
from lxml import html as lxml_html

from panel import events, hypervisor
from panel.actors import Actor
from panel.models import AuditEvent, Host
from tests.conftest import LOCAL_URI
from vms.models import VirtualMachine
from vms.search import with_tag
from vms.services import reread
from vms.services.tags import set_vm_tags

from .conftest import alerts, texts

LINKED_NAMES = "//table[contains(@class, 'vm-table')]/tbody/tr[@data-vm]/td[2]/a"


@pytest.fixture
def fleet(people):
    """web-1 (tagged web, prod) and db-1 (db) of alpha, owned by member; beta-web of beta
    (tagged web); untagged of alpha."""
    host = Host.objects.create(name="kvm01", uri="qemu+ssh://kvm01.example.test/system")
    rows = {}
    for name, project, tags in [
        ("web-1", people.alpha, ["prod", "web"]),
        ("db-1", people.alpha, ["db"]),
        ("untagged", people.alpha, []),
        ("beta-web", people.beta, ["web"]),
    ]:
        rows[name] = VirtualMachine.objects.create(
            id=uuid.uuid4(),
            name=name,
            host=host,
            project=project,
            owner=people["member"] if project == people.alpha else None,
            state="running",
            tags=tags,
        )
    return rows


def tags_of(vm: VirtualMachine) -> list[str]:
    return VirtualMachine.objects.get(pk=vm.pk).tags


def audit_rows() -> list[tuple[str, str, str, str]]:
    return list(
        AuditEvent.objects.filter(action="vm.tags")
        .order_by("pk")
        .values_list("username", "target", "result", "detail")
    )


def listed(response) -> list[str]:
    """The names in the VM list's rows (the name's link, not the tag badges beside it)."""
    assert response.status_code == 200, response.status_code
    return texts(response, LINKED_NAMES)


def api_names(response) -> list[str]:
    assert response.status_code == 200, response.data
    return [vm["name"] for vm in response.json()["results"]]


# --- setting them -------------------------------------------------------------------------


def test_a_member_tags_their_vm_on_its_options_tab(fleet, client_for):
    vm = fleet["untagged"]

    response = client_for("member").post(
        f"/vms/{vm.pk}/tags/", {"tags": "Web, prod  db,web"}, follow=True
    )

    assert response.redirect_chain == [(f"/vms/{vm.pk}/", 302)]
    assert "Tags of untagged: db, prod, web." in alerts(response)
    assert tags_of(vm) == ["db", "prod", "web"]
    assert audit_rows() == [("member", "untagged", "success", "none -> db, prod, web")]
    # The Options tab's form holds them, the Overview shows them as links to the list.
    doc = lxml_html.fromstring(response.content.decode())
    assert doc.xpath("//section[@id='options']//input[@name='tags']/@value") == ["db, prod, web"]
    badges = doc.xpath("//section[@id='summary']//*[@data-vm-tags]/a")
    assert [(a.text, a.get("href")) for a in badges] == [
        ("db", "/vms/?tag=db"),
        ("prod", "/vms/?tag=prod"),
        ("web", "/vms/?tag=web"),
    ]


def test_tags_can_be_changed_and_removed_each_change_audited(fleet, client_for):
    vm, page = fleet["web-1"], client_for("operator")

    page.post(f"/vms/{vm.pk}/tags/", {"tags": "web"})
    page.post(f"/vms/{vm.pk}/tags/", {"tags": "web"})  # the same again: nothing to record
    page.post(f"/vms/{vm.pk}/tags/", {"tags": ""})

    assert tags_of(vm) == []
    assert [row[3] for row in audit_rows()] == ["prod, web -> web", "web -> none"]


@pytest.mark.parametrize(
    ("asked", "says"),
    [
        ("web, bad!", "'bad!' is not a tag: a tag is 1 to 32 lowercase letters, digits"),
        ("x" * 33, f"'{'x' * 33}' is not a tag"),
        (" ".join(f"t{n}" for n in range(17)), "17 tags are too many"),
    ],
)
def test_bad_tags_on_the_page_change_nothing_and_say_why(fleet, client_for, asked, says):
    vm = fleet["web-1"]

    response = client_for("member").post(f"/vms/{vm.pk}/tags/", {"tags": asked}, follow=True)

    [alert] = alerts(response)
    assert says in alert
    assert "the tags were not changed" in alert
    assert tags_of(vm) == ["prod", "web"]
    assert [(user, result) for user, _t, result, _d in audit_rows()] == [("member", "failure")]


def test_the_api_sets_tags_with_a_patch(fleet, api_for):
    vm = fleet["db-1"]

    response = api_for("member").patch(
        f"/api/v1/vms/{vm.pk}/", {"tags": ["web", "DB", "backup.daily"]}, format="json"
    )

    assert response.status_code == 200, response.data
    assert response.data["tags"] == ["backup.daily", "db", "web"]
    assert tags_of(vm) == ["backup.daily", "db", "web"]
    assert api_for("viewer").get(f"/api/v1/vms/{vm.pk}/").json()["tags"] == tags_of(vm)
    assert audit_rows() == [("member", "db-1", "success", "db -> backup.daily, db, web")]


@pytest.mark.parametrize(
    ("tags", "says"),
    [
        (["ok", "not ok"], "'not ok' is not a tag"),
        ([""], "'' is not a tag"),
        (["x" * 33], "is not a tag"),
        ([f"t{n}" for n in range(17)], "17 tags are too many"),
        ([1, 2], "Send the tags as a list of strings"),
        ({"web": True}, "Send the tags as a list of strings"),
    ],
)
def test_the_api_refuses_bad_tags_on_the_field_and_changes_nothing(fleet, api_for, tags, says):
    vm = fleet["web-1"]

    response = api_for("member").patch(
        f"/api/v1/vms/{vm.pk}/", {"tags": tags, "autostart": True}, format="json"
    )

    assert response.status_code == 400, response.data
    [message] = response.json()["tags"]
    assert says in message
    assert tags_of(vm) == ["prod", "web"]
    assert VirtualMachine.objects.get(pk=vm.pk).autostart is False
    assert audit_rows() == []


@pytest.mark.parametrize(
    ("persona", "status"), [("viewer", 403), ("member2", 403), ("outsider", 404)]
)
def test_only_those_who_may_change_the_vm_tag_it(fleet, client_for, api_for, persona, status):
    vm = fleet["web-1"]

    page = client_for(persona).post(f"/vms/{vm.pk}/tags/", {"tags": "mine"})
    api = api_for(persona).patch(f"/api/v1/vms/{vm.pk}/", {"tags": ["mine"]}, format="json")

    assert (page.status_code, api.status_code) == (status, status)
    assert tags_of(vm) == ["prod", "web"]
    assert not AuditEvent.objects.filter(action="vm.tags", result="success").exists()


def test_a_viewer_sees_the_tags_and_no_form(fleet, client_for):
    doc = lxml_html.fromstring(
        client_for("viewer").get(f"/vms/{fleet['web-1'].pk}/").content.decode()
    )

    assert doc.xpath("//*[@data-vm-tags]/a/text()") == ["prod", "web"]
    assert doc.xpath("//form[contains(@action, '/tags/')]") == []


def test_new_tags_reach_the_browsers_watching_the_vm(
    fleet, people, django_capture_on_commit_callbacks
):
    vm = fleet["db-1"]
    channel = f"test-vm-{uuid.uuid4().hex}"

    async def listen() -> None:
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        await layer.group_add(events.vm_row_group(str(vm.pk)), channel)

    async def heard() -> dict:
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        return await layer.receive(channel)

    async_to_sync(listen)()
    with django_capture_on_commit_callbacks(execute=True):
        set_vm_tags(vm, ["db", "primary"], actor=Actor(people["operator"]))

    message = async_to_sync(heard)()
    assert message["type"] == "vm.update"
    assert message["vm"]["tags"] == ["db", "primary"]


# --- the list and the API filter on them --------------------------------------------------


def test_the_list_shows_tags_as_links_beside_the_name(fleet, client_for):
    response = client_for("member").get("/vms/")

    assert listed(response) == ["db-1", "untagged", "web-1"]
    doc = lxml_html.fromstring(response.content.decode())
    row = doc.xpath(f"//tr[@data-vm='{fleet['web-1'].pk}']/td[2]")[0]
    badges = row.xpath(".//*[@data-vm-tags]/a")
    assert [(a.text, a.get("href")) for a in badges] == [("prod", "?tag=prod"), ("web", "?tag=web")]
    assert doc.xpath("//form[@method='get']//input[@name='tag']/@value") == [""]


def test_the_list_filters_by_tag_within_what_each_user_sees(fleet, client_for):
    member, admin, outsider = client_for("member"), client_for("admin"), client_for("outsider")

    assert listed(member.get("/vms/?tag=web")) == ["web-1"]
    assert listed(member.get("/vms/?tag=WEB")) == ["web-1"]
    assert listed(admin.get("/vms/?tag=web")) == ["beta-web", "web-1"]
    assert listed(outsider.get("/vms/?tag=web")) == ["beta-web"]
    assert listed(outsider.get("/vms/?tag=prod")) == []
    # A tag matches whole: web is not we, nor web-1.
    assert listed(member.get("/vms/?tag=we")) == []
    assert listed(member.get("/vms/?tag=web&q=db")) == []
    assert listed(member.get("/vms/?tag=bad%22tag")) == []
    response = member.get("/vms/?tag=db")
    assert listed(response) == ["db-1"]
    assert lxml_html.fromstring(response.content.decode()).xpath("//input[@name='tag']/@value") == [
        "db"
    ]


def test_the_api_filters_by_tag_within_what_each_user_sees(fleet, api_for):
    assert api_names(api_for("member").get("/api/v1/vms/?tag=web")) == ["web-1"]
    assert api_names(api_for("admin").get("/api/v1/vms/?tag=Web")) == ["beta-web", "web-1"]
    assert api_names(api_for("outsider").get("/api/v1/vms/?tag=web")) == ["beta-web"]
    assert api_names(api_for("outsider").get("/api/v1/vms/?tag=db")) == []
    assert api_names(api_for("member").get("/api/v1/vms/?tag=w%25")) == []
    listed_tags = {
        vm["name"]: vm["tags"] for vm in api_for("member").get("/api/v1/vms/").json()["results"]
    }
    assert listed_tags == {"db-1": ["db"], "untagged": [], "web-1": ["prod", "web"]}


def test_the_openapi_document_tells_of_tags(api_for):
    schema = api_for("admin").get("/api/v1/schema/?format=json").json()

    vm = schema["components"]["schemas"]["VirtualMachine"]["properties"]["tags"]
    assert vm["type"] == "array" and vm["items"]["type"] == "string"
    assert "tags" in schema["components"]["schemas"]["PatchedVirtualMachine"]["properties"]
    parameters = {p["name"] for p in schema["paths"]["/api/v1/vms/"]["get"]["parameters"]}
    assert {"tag", "search", "host", "project", "state", "ordering"} <= parameters


def test_the_list_reads_no_more_for_tags(fleet, client_for):
    """The badges come with the rows: no query per VM or per tag."""
    page, alpha = client_for("member"), fleet["web-1"].project
    page.get("/vms/")  # the session and the user read once
    VirtualMachine.objects.filter(project=alpha).update(tags=[])
    with CaptureQueriesContext(connection) as untagged:
        page.get("/vms/")
    VirtualMachine.objects.filter(project=alpha).update(tags=["a", "b", "c"])
    with CaptureQueriesContext(connection) as tagged:
        response = page.get("/vms/")

    assert len(tagged) == len(untagged)
    assert texts(response, "//*[@data-vm-tags]") == ["a b c"] * 3


@pytest.mark.postgres_only
def test_postgresql_filters_tags_through_their_index(people):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'vms_vm_tags_gin'")
        row = cursor.fetchone()
    assert row is not None, "the tag filter has no index: migration vms 0011 did not create it"
    assert "jsonb_path_ops" in row[0]
    host = Host.objects.create(name="kvm01", uri="qemu+ssh://kvm01.example.test/system")
    VirtualMachine.objects.bulk_create(
        VirtualMachine(id=uuid.uuid4(), name=f"vm-{n:05d}", host=host, tags=[f"t{n % 50}"])
        for n in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE vms_virtualmachine")
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = with_tag(VirtualMachine.objects.all(), "t7").order_by().explain()
    assert "vms_vm_tags_gin" in plan, plan
    assert with_tag(VirtualMachine.objects.all(), "t7").count() == 60


# --- a real guest ---------------------------------------------------------------------------


@pytest.mark.libvirt
@pytest.mark.timeout(120)
def test_tags_are_the_panels_and_leave_the_domain_as_it_was(make_vm, api_for):
    vm = make_vm()
    before = hypervisor.domain_xml(LOCAL_URI, str(vm.pk), inactive=True)

    response = api_for("member").patch(
        f"/api/v1/vms/{vm.pk}/", {"tags": ["web", "prod"]}, format="json"
    )

    assert response.status_code == 200, response.data
    assert hypervisor.domain_xml(LOCAL_URI, str(vm.pk), inactive=True) == before
    # The host's next report of the domain keeps them.
    assert reread(VirtualMachine.objects.select_related("host").get(pk=vm.pk)).tags == [
        "prod",
        "web",
    ]
    assert tags_of(vm) == ["prod", "web"]
