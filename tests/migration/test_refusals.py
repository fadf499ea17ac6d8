"""The pre-check refuses, with the reason, and nothing changes: no job, the VM where it
was, nothing on the target, a failure in the audit log. And the API's usual refusals."""

from __future__ import annotations

import socket

import pytest
from lxml import etree

from panel import hypervisor
from panel.choices import HostState
from panel.models import AuditEvent, Host, Job
from tests.conftest import LOCAL_URI
from tests.migration.conftest import where
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_nothing_changed(vm, second_host_uri, state="running"):
    assert not Job.objects.filter(kind="vm.migrate").exists()
    assert VirtualMachine.objects.get(pk=vm.pk).host == vm.host
    assert where(vm, second_host_uri) == (state, "absent")
    refusal = AuditEvent.objects.filter(action="vm.migrate").get()
    assert refusal.result == "failure"
    return refusal


def test_it_refuses_a_target_host_that_is_down(guest, api_for, second_host_uri):
    vm = guest()
    down = Host.objects.create(
        name="down", uri=f"qemu+tcp://127.0.0.1:{closed_port()}/system", state=HostState.DOWN
    )
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": down.pk}, format="json"
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail.startswith(f"{vm.name} cannot migrate to down. target host: ")
    assert "cannot be reached" in detail and "Nothing was changed." in detail
    assert assert_nothing_changed(vm, second_host_uri).detail == detail


def test_it_refuses_when_the_target_keeps_its_memory_for_itself(
    guest, api_for, second_host, second_host_uri
):
    vm = guest()
    facts = hypervisor.host_facts(second_host_uri)
    # The host keeps all but 64 MiB for itself: a 96 MiB guest does not fit.
    second_host.facts = {"reserved_memory_bytes": facts.memory_total_bytes - 64 * 2**20}
    second_host.save()
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": second_host.pk}, format="json"
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "memory: Not enough memory for guests on the target" in detail
    assert "this guest needs 96 MiB" in detail
    assert "CPU" not in detail  # only the failing check is named
    assert_nothing_changed(vm, second_host_uri)


def test_it_refuses_a_guest_with_a_passthrough_device(guest, api_for, second_host, second_host_uri):
    vm = guest(running=False)
    root = etree.fromstring(hypervisor.domain_xml(LOCAL_URI, str(vm.pk), inactive=True).encode())
    hostdev = etree.SubElement(
        root.find("devices"), "hostdev", mode="subsystem", type="pci", managed="yes"
    )
    etree.SubElement(
        etree.SubElement(hostdev, "source"),
        "address",
        domain="0x0000",
        bus="0x00",
        slot="0x1f",
        function="0x7",
    )
    hypervisor.redefine_domain(LOCAL_URI, str(vm.pk), etree.tostring(root, encoding="unicode"))
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": second_host.pk}, format="json"
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "devices: " in detail and "PCI passthrough 0000:00:1f:7" in detail
    assert "Detach them first." in detail
    assert_nothing_changed(vm, second_host_uri, state="shutoff")


def test_it_refuses_a_cpu_model_the_target_cannot_run(guest, api_for, second_host, second_host_uri):
    vm = guest(running=False)
    root = etree.fromstring(hypervisor.domain_xml(LOCAL_URI, str(vm.pk), inactive=True).encode())
    for old in root.findall("cpu"):
        root.remove(old)
    cpu = etree.SubElement(root, "cpu", mode="custom", match="exact")
    etree.SubElement(cpu, "model", fallback="forbid").text = "Icelake-Server"
    hypervisor.redefine_domain(LOCAL_URI, str(vm.pk), etree.tostring(root, encoding="unicode"))
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": second_host.pk}, format="json"
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "CPU: The target's CPU cannot run CPU model Icelake-Server." in detail
    assert_nothing_changed(vm, second_host_uri, state="shutoff")


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "target_host", "give the id of the host"),
        ({"target_host": "two"}, "target_host", "whole number"),
        ({"target_host": "SELF"}, "target_host", "already runs on local"),
        ({"target_host": "SECOND", "copy_storage": "some"}, "copy_storage", "'incremental'"),
        ({"target_host": "SECOND", "copy_storage": ["all"]}, "copy_storage", "'incremental'"),
        ({"target_host": "SECOND", "bandwidth_mib": -1}, "bandwidth_mib", "MiB/s"),
        ({"target_host": "SECOND", "live": "maybe"}, "live", "true or false"),
        (
            {"target_host": "SECOND", "target_pool": 999999},
            "target_pool",
            "choose a pool of second",
        ),
    ],
)
def test_it_answers_400_naming_the_field(guest, api_for, second_host, body, field, says):
    vm = guest(running=False)
    body = {
        k: {"SELF": vm.host_id, "SECOND": second_host.pk}.get(v, v) if isinstance(v, str) else v
        for k, v in body.items()
    }
    response = api_for("member").post(f"/api/v1/vms/{vm.pk}/migrate/", body, format="json")
    assert response.status_code == 400, response.content
    assert says in str(response.json()[field])
    assert not Job.objects.filter(kind="vm.migrate").exists()


@pytest.mark.parametrize(
    ("persona", "status"),
    [("anonymous", 401), ("outsider", 404), ("viewer", 403), ("member2", 403)],
)
def test_it_refuses_who_may_not_migrate(guest, api_for, second_host, persona, status):
    vm = guest(running=False)
    response = api_for(persona).post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": second_host.pk}, format="json"
    )
    assert response.status_code == status
    assert not Job.objects.filter(kind="vm.migrate").exists()


def test_it_is_post_only(guest, api_for, second_host):
    vm = guest(running=False)
    assert api_for("member").get(f"/api/v1/vms/{vm.pk}/migrate/").status_code == 405


def test_a_host_the_project_may_not_use_is_not_found(
    guest, api_for, alpha, local_host, second_host
):
    vm = guest(running=False)
    alpha.allowed_hosts.set([local_host])
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": second_host.pk}, format="json"
    )
    assert response.status_code == 404
    assert "second" not in response.content.decode()


def test_the_openapi_schema_documents_migrate_and_move_storage(api_for, people):
    response = api_for("member").get(
        "/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200
    doc = response.json()
    post = doc["paths"]["/api/v1/vms/{id}/migrate/"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    fields = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert {"target_host", "live", "copy_storage", "persistent", "undefine_source"} <= set(fields)
    assert "202" in post["responses"]
    assert "202" in doc["paths"]["/api/v1/vms/{id}/move-storage/"]["post"]["responses"]
