"""A VM's tags through the API: set with a PATCH, checked (bad ones change nothing and
say why), audited, pushed to the browsers watching the VM, and filtered on without
showing another project's VMs. Rows are made directly, except in the last test, which
tags a real guest and reads its domain."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.db import connection

from panel import events, hypervisor
from panel.actors import Actor
from panel.models import AuditEvent, Host
from tests.conftest import LOCAL_URI
from vms.models import VirtualMachine
from vms.search import with_tag
from vms.services import reread
from vms.services.tags import set_vm_tags


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


def api_names(response) -> list[str]:
    assert response.status_code == 200, response.data
    return [vm["name"] for vm in response.json()["results"]]


# --- setting them -------------------------------------------------------------------------


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


# --- the API filters on them ---------------------------------------------------------------


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
