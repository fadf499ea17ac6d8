"""The VM inventory on the real host: domains found outside the panel, moving them into
a project, domains that disappear, deleting VMs with the disks chosen, the details
read from the host, and editing the domain XML."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from lxml import html as lxml_html

from panel import events, hypervisor
from panel.models import AuditEvent, Job
from panel.services import reconcile_host
from storage.models import Volume
from tests.conftest import LOCAL_URI
from vms import services as vm_services
from vms.models import VirtualMachine
from vms.tasks import vm_delete_task

from .conftest import PASSWORDS, alerts, page_text, queued_tasks, texts

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


def listed_ids(api) -> set[str]:
    response = api.get("/api/v1/vms/?page_size=500")
    assert response.status_code == 200, response.data
    return {vm["id"] for vm in response.data["results"]}


def two_disk_vm(make_vm, scratch_pool, *, running: bool) -> tuple[VirtualMachine, str, str]:
    vdb = scratch_pool.add_volume("vol1.qcow2")
    vdc = scratch_pool.add_volume("vol2.qcow2")
    vm = make_vm(
        running=running,
        disks=(
            hypervisor.DiskSpec(path=vdb, target="vdb", format="qcow2"),
            hypervisor.DiskSpec(path=vdc, target="vdc", format="qcow2"),
        ),
    )
    return vm, vdb, vdc


# --- found, assigned, missing -----------------------------------------------------------------


def test_it_lists_a_domain_defined_outside_the_panel_as_unassigned(
    local_host, define_guest, api_for
):
    info = define_guest()

    reconcile_host(local_host, checks=False)

    vm = VirtualMachine.objects.get(pk=info.uuid)
    assert (vm.name, vm.state, vm.host, vm.project.name, vm.owner) == (
        info.name,
        "shutoff",
        local_host,
        "unassigned",
        None,
    )
    assert info.uuid in listed_ids(api_for("admin"))
    assert info.uuid not in listed_ids(api_for("member"))
    assert api_for("member").get(f"/api/v1/vms/{info.uuid}/").status_code == 404


def test_it_lets_an_admin_move_a_found_vm_into_a_project(local_host, define_guest, api_for, alpha):
    info = define_guest()
    reconcile_host(local_host, checks=False)
    url = f"/api/v1/vms/{info.uuid}/"

    response = api_for("admin").patch(url, {"project": alpha.pk}, format="json")

    assert response.status_code == 200, response.data
    assert response.data["project"] == alpha.pk
    event = AuditEvent.objects.get(action="vm.assign")
    assert (event.username, event.target, event.detail, event.project) == (
        "admin",
        info.name,
        "unassigned -> alpha",
        alpha,
    )
    assert info.uuid in listed_ids(api_for("member"))
    assert api_for("member").get(url).data["state"] == "shutoff"
    assert info.uuid not in listed_ids(api_for("outsider"))
    assert api_for("outsider").get(url).status_code == 404


def test_it_refuses_to_let_an_operator_move_a_vm_out_of_the_project(make_vm, api_for, beta):
    vm = make_vm()

    response = api_for("operator").patch(
        f"/api/v1/vms/{vm.pk}/", {"project": beta.pk}, format="json"
    )

    assert response.status_code == 403
    assert "Only administrators can move VMs" in response.data["detail"]
    assert VirtualMachine.objects.get(pk=vm.pk).project.name == "alpha"


def test_it_marks_a_vm_undefined_outside_the_panel_missing_and_keeps_it(
    make_vm, local_host, api_for, client_for
):
    vm = make_vm()
    hypervisor.undefine_domain(LOCAL_URI, str(vm.pk))

    counts = reconcile_host(local_host, checks=False)

    assert counts["missing"] == 1
    kept = VirtualMachine.objects.get(pk=vm.pk)
    assert (kept.state, kept.project.name, kept.owner.username) == ("missing", "alpha", "member")
    assert api_for("member").get(f"/api/v1/vms/{vm.pk}/").data["state"] == "missing"
    page = client_for("member").get(f"/vms/{vm.pk}/")
    assert "This VM is no longer on local" in page_text(page)


def test_it_removes_a_missing_vm_from_the_list(make_vm, local_host, api_for):
    vm = make_vm()
    hypervisor.undefine_domain(LOCAL_URI, str(vm.pk))
    reconcile_host(local_host, checks=False)
    url = f"/api/v1/vms/{vm.pk}/"
    assert api_for("viewer").delete(url).status_code == 403
    assert api_for("outsider").delete(url).status_code == 404
    assert api_for("anonymous").delete(url).status_code == 401

    response = api_for("member").delete(url)

    assert response.status_code == 204
    assert not VirtualMachine.objects.filter(pk=vm.pk).exists()
    assert not Job.objects.exists()
    event = AuditEvent.objects.get(action="vm.delete", result="success")
    assert (event.username, event.target, event.detail) == (
        "member",
        vm.name,
        "missing VM removed from the list",
    )


# --- delete with disks ---------------------------------------------------------------------


def test_it_deletes_a_running_vm_with_all_its_disks_through_the_api(
    make_vm, scratch_pool, local_host, api_for, django_capture_on_commit_callbacks
):
    vm, vdb, vdc = two_disk_vm(make_vm, scratch_pool, running=True)
    reconcile_host(local_host, checks=False)  # the pool's volumes become Volume rows
    assert set(
        Volume.objects.filter(pool__name=scratch_pool.name).values_list("path", flat=True)
    ) == {
        vdb,
        vdc,
    }

    with django_capture_on_commit_callbacks() as callbacks:
        response = api_for("member").delete(
            f"/api/v1/vms/{vm.pk}/?remove_storage=true",
            headers={"X-Panel-Password": PASSWORDS["member"]},
        )

    assert response.status_code == 202, response.data
    job = Job.objects.get(pk=response.data["job"])
    assert queued_tasks(callbacks) == [("vms.delete", (job.pk,))]
    assert (job.kind, job.state, job.user.username) == ("vm.delete", "queued", "member")
    event = AuditEvent.objects.get(action="vm.delete")
    assert event.detail == f"job #{job.pk}; remove {[vdb, vdc]}"

    vm_delete_task(job.pk)

    job.refresh_from_db()
    assert (job.state, job.message) == ("succeeded", f"{vm.name} deleted; 2 disk(s) removed.")
    with pytest.raises(hypervisor.NotFound):
        hypervisor.get_domain(LOCAL_URI, str(vm.pk))
    assert scratch_pool.volume_names() == set()
    assert not VirtualMachine.objects.filter(pk=vm.pk).exists()
    assert not Volume.objects.filter(path__in=[vdb, vdc]).exists()


def test_it_deletes_only_the_disk_checked_on_the_delete_page(make_vm, scratch_pool, client_for):
    vm, vdb, vdc = two_disk_vm(make_vm, scratch_pool, running=False)
    client = client_for("member")
    form = client.get(f"/vms/{vm.pk}/delete/")
    assert form.status_code == 200
    assert texts(form, "//label[starts-with(@for, 'rm-')]") == [
        f"vdb: {vdb} disk",
        f"vdc: {vdc} disk",
    ]

    response = client.post(f"/vms/{vm.pk}/delete/", {"remove": ["vdb"]})

    job = Job.objects.get(kind="vm.delete")
    assert response.status_code == 302
    assert response.url == f"/jobs/{job.pk}/"
    vm_delete_task(job.pk)
    job.refresh_from_db()
    assert (job.state, job.message) == ("succeeded", f"{vm.name} deleted; 1 disk(s) removed.")
    assert scratch_pool.volume_names() == {"vol2.qcow2"}
    with pytest.raises(hypervisor.NotFound):
        hypervisor.get_domain(LOCAL_URI, str(vm.pk))
    assert not VirtualMachine.objects.filter(pk=vm.pk).exists()


def test_it_refuses_to_delete_a_disk_the_vm_does_not_have(make_vm, scratch_pool, client_for):
    vm, _vdb, _vdc = two_disk_vm(make_vm, scratch_pool, running=False)

    response = client_for("member").post(f"/vms/{vm.pk}/delete/", {"remove": ["vdz"]})

    assert response.status_code == 200
    assert f"{vm.name} has no disk vdz; its disks are vdb, vdc." in alerts(response)
    assert not Job.objects.exists()
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"
    assert scratch_pool.volume_names() == {"vol1.qcow2", "vol2.qcow2"}


@pytest.mark.parametrize(("persona", "status"), [("viewer", 403), ("member2", 403)])
def test_it_refuses_the_delete_page_to_those_who_may_not_delete(
    make_vm, client_for, persona, status
):
    vm = make_vm()

    response = client_for(persona).post(f"/vms/{vm.pk}/delete/")

    assert response.status_code == status
    assert not Job.objects.exists()
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"


# --- details ---------------------------------------------------------------------------------


def test_it_shows_the_details_read_from_the_host(make_vm, api_for, client_for):
    vm = make_vm(running=True)

    vm_services.refresh_details(vm)

    shown = api_for("member").get(f"/api/v1/vms/{vm.pk}/").data
    details = shown["details"]
    assert details["state_reason"] == "booted"
    assert isinstance(details["id"], int) and details["id"] > 0
    assert (details["os_type"], details["max_memory_mib"]) == ("hvm", 96)
    assert details["has_managed_save"] is False
    assert f"<name>{vm.name}</name>" in shown["xml"]
    assert f"<uuid>{vm.pk}</uuid>" in shown["xml"]
    page = client_for("member").get(f"/vms/{vm.pk}/")
    overview = dict(
        zip(
            texts(page, "//dl[contains(@class, 'vm-info')]/dt"),
            texts(page, "//dl[contains(@class, 'vm-info')]/dd"),
            strict=True,
        )
    )
    assert overview["State"] == "Running (booted)"
    assert overview["Domain id"] == str(details["id"])


def test_fresh_details_reach_the_vms_page_and_not_every_host_page(
    make_vm, django_capture_on_commit_callbacks
):
    """Each VM page view reads the VM's details; the VM list and host pages, which show
    only its state and addresses, hear of the VM only when those change."""
    vm = make_vm(running=True)
    with django_capture_on_commit_callbacks(execute=True):
        vm = vm_services.refresh_details(vm)  # the first read brings the row up to date
    # Plain channel names, read straight from Redis: each async_to_sync runs its own loop,
    # and a layer instance belongs to one.
    vm_channel, host_channel = f"test-vm-{uuid.uuid4().hex}", f"test-host-{uuid.uuid4().hex}"

    async def listen() -> None:
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        await layer.group_add(events.vm_group(str(vm.pk)), vm_channel)
        await layer.group_add(events.host_group(vm.host_id), host_channel)

    async def heard(channel: str) -> dict | None:
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        try:
            return await asyncio.wait_for(layer.receive(channel), 2)
        except TimeoutError:
            return None

    async_to_sync(listen)()
    with django_capture_on_commit_callbacks(execute=True):
        vm_services.refresh_details(vm)
    on_vm, on_host = async_to_sync(heard)(vm_channel), async_to_sync(heard)(host_channel)
    assert on_vm is not None and on_vm["vm"]["details_at"], on_vm
    assert on_host is None, on_host

    # A change of state reaches both.
    with django_capture_on_commit_callbacks(execute=True):
        vm_services.sync_domain(vm.host, hypervisor.suspend_domain(LOCAL_URI, str(vm.pk)))
    on_vm, on_host = async_to_sync(heard)(vm_channel), async_to_sync(heard)(host_channel)
    assert on_vm["vm"]["state"] == on_host["vm"]["state"] == "paused", (on_vm, on_host)


# --- XML ---------------------------------------------------------------------------------------


def raw_text(response, xpath: str) -> str:
    """The text of the one element the XPath finds, as written (whitespace kept)."""
    [element] = lxml_html.fromstring(response.content.decode()).xpath(xpath)
    return element.text_content()


def with_memory(xml: str, mib: int) -> str:
    kib = str(mib * 1024)
    xml = re.sub(r"(<memory unit='KiB'>)\d+(</memory>)", rf"\g<1>{kib}\g<2>", xml)
    return re.sub(r"(<currentMemory unit='KiB'>)\d+(</currentMemory>)", rf"\g<1>{kib}\g<2>", xml)


def test_it_saves_edited_xml_after_showing_the_changes(make_vm, client_for):
    vm = vm_services.refresh_details(make_vm())
    edited = with_memory(vm.xml, 128)
    assert edited != vm.xml
    client = client_for("admin")

    preview = client.post(f"/vms/{vm.pk}/xml/", {"xml": edited})

    assert preview.status_code == 200
    diff = [line.strip() for line in raw_text(preview, "//pre[@data-xml-diff]").splitlines()]
    assert [line for line in diff if line[:1] in "+-" and line[1:2] not in "+-"] == [
        "-  <memory unit='KiB'>98304</memory>",
        "-  <currentMemory unit='KiB'>98304</currentMemory>",
        "+  <memory unit='KiB'>131072</memory>",
        "+  <currentMemory unit='KiB'>131072</currentMemory>",
    ]
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).memory_mib == 96

    saved = client.post(f"/vms/{vm.pk}/xml/", {"xml": edited, "confirm": "1"}, follow=True)

    assert saved.redirect_chain == [(f"/vms/{vm.pk}/", 302)]
    assert f"The definition of {vm.name} was saved." in alerts(saved)
    assert VirtualMachine.objects.get(pk=vm.pk).memory_mib == 128
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).memory_mib == 128
    assert AuditEvent.objects.get(action="vm.edit_xml").result == "success"


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda xml: xml.replace("</domain>", ""), id="malformed"),
        pytest.param(lambda xml: with_memory(xml, 96).replace("98304", "lots", 1), id="invalid"),
    ],
)
def test_it_refuses_xml_libvirt_will_not_take(make_vm, client_for, broken):
    vm = vm_services.refresh_details(make_vm())

    response = client_for("admin").post(
        f"/vms/{vm.pk}/xml/", {"xml": broken(vm.xml), "confirm": "1"}
    )

    assert response.status_code == 400
    [message] = alerts(response)
    assert message.startswith("libvirt refused the XML: ")
    assert message.endswith("Nothing was changed.")
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).memory_mib == 96
    assert VirtualMachine.objects.get(pk=vm.pk).memory_mib == 96
    assert AuditEvent.objects.get(action="vm.edit_xml").result == "failure"


@pytest.mark.parametrize(("persona", "status"), [("operator", 403), ("outsider", 404)])
def test_it_refuses_the_xml_page_to_non_admins(make_vm, client_for, persona, status):
    vm = vm_services.refresh_details(make_vm())
    client = client_for(persona)

    shown = client.get(f"/vms/{vm.pk}/xml/")
    saved = client.post(f"/vms/{vm.pk}/xml/", {"xml": with_memory(vm.xml, 128), "confirm": "1"})

    assert (shown.status_code, saved.status_code) == (status, status)
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).memory_mib == 96
    assert not AuditEvent.objects.filter(action="vm.edit_xml").exists()


def test_it_shows_the_saved_definition_when_the_xml_page_is_opened_again(make_vm, client_for):
    vm = vm_services.refresh_details(make_vm())
    client = client_for("admin")
    client.post(f"/vms/{vm.pk}/xml/", {"xml": with_memory(vm.xml, 128), "confirm": "1"})

    editor = raw_text(client.get(f"/vms/{vm.pk}/xml/"), "//textarea[@name='xml']")

    assert "<memory unit='KiB'>131072</memory>" in editor
