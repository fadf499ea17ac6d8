"""A host's migration address: set and refused through the API and the host page,
shown there, and used by the migration: the target's QEMU listens on that address
alone, so one it does not have fails the migration and leaves the VM where it was."""

from __future__ import annotations

import pytest

from panel.models import AuditEvent, Host, Job
from storage.models import StoragePool
from tests.conftest import LOCAL_URI
from tests.migration.conftest import where
from vms.models import VirtualMachine
from vms.tasks import vm_migrate_task

pytestmark = [pytest.mark.timeout(240)]


@pytest.mark.parametrize(
    "junk",
    [
        "tcp://10.0.0.5",
        "10.0.0.5:49152",
        "10.0.0.300",
        "0.0.0.0",
        "::",
        "host name",
        "-bad.example",
        "a" * 64 + ".example",
        "kvm01.example.net/x",
    ],
)
def test_junk_is_refused_with_a_clear_message(api_for, local_host, junk):
    response = api_for("admin").post(
        f"/api/v1/hosts/{local_host.pk}/migration-address/",
        {"migration_address": junk},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "IP address or host name" in response.content.decode()
    assert Host.objects.get(pk=local_host.pk).migration_address == ""
    assert not AuditEvent.objects.filter(action="host.migration_address", result="success")


def test_an_admin_sets_and_clears_it_and_others_cannot(api_for, local_host, client_for):
    url = f"/api/v1/hosts/{local_host.pk}/migration-address/"
    assert api_for("member").post(url, {"migration_address": "10.0.0.5"}).status_code == 403
    response = api_for("admin").post(url, {"migration_address": " KVM01.Example.NET. "})
    assert response.status_code == 200, response.content
    assert response.json()["migration_address"] == "kvm01.example.net"
    detail = api_for("member").get(f"/api/v1/hosts/{local_host.pk}/").json()
    assert detail["migration_address"] == "kvm01.example.net"
    response = api_for("admin").post(url, {"migration_address": "fd00::0:5"}, format="json")
    assert response.json()["migration_address"] == "fd00::5"

    page = client_for("admin")
    response = page.post(
        f"/hosts/{local_host.pk}/migration-address/", {"migration_address": "not valid!"}
    )
    assert response.status_code == 302
    assert Host.objects.get(pk=local_host.pk).migration_address == "fd00::5"
    page.post(f"/hosts/{local_host.pk}/migration-address/", {"migration_address": "10.1.2.3"})
    html = page.get(f"/hosts/{local_host.pk}/").content.decode()
    assert 'name="migration_address"' in html and 'value="10.1.2.3"' in html
    page.post(f"/hosts/{local_host.pk}/migration-address/", {"migration_address": ""})
    assert Host.objects.get(pk=local_host.pk).migration_address == ""
    audit = AuditEvent.objects.filter(action="host.migration_address", result="success")
    assert [a.detail for a in audit.order_by("pk")] == [
        "kvm01.example.net",
        "fd00::5",
        "10.1.2.3",
        "none: the host part of its URI",
    ]
    assert (
        'name="migration_address"'
        not in client_for("member").get(f"/hosts/{local_host.pk}/").content.decode()
    )


def test_the_openapi_document_has_it(api_for):
    schema = api_for("admin").get("/api/v1/schema/", {"format": "json"}).json()
    assert "migration_address" in schema["components"]["schemas"]["Host"]["properties"]
    assert "/api/v1/hosts/{id}/migration-address/" in schema["paths"]
    patch = schema["components"]["schemas"]["PatchedPoolPatch"]["properties"]
    assert "shared_storage" in patch


@pytest.mark.libvirt
def test_the_target_listens_on_its_migration_address_alone(
    guest, api_for, second_host, second_host_uri
):
    vm = guest()
    # 192.0.2.7 (TEST-NET-1) is no address of this machine: the target's QEMU cannot
    # listen there, so the migration fails before a byte is sent.
    Host.objects.filter(pk=second_host.pk).update(migration_address="192.0.2.7")
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": second_host.pk}, format="json"
    )
    assert response.status_code == 202, response.content
    vm_migrate_task(response.json()["job"])
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == "failed", job.log
    assert "to tcp://192.0.2.7" in job.log
    assert f"It still runs on {vm.host.name}" in job.message and "bind" in job.message
    assert where(vm, second_host_uri) == ("running", "absent")

    # Its real address: the migration goes there and the guest runs on the target.
    Host.objects.filter(pk=second_host.pk).update(migration_address="127.0.0.1")
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": second_host.pk}, format="json"
    )
    vm_migrate_task(response.json()["job"])
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == "succeeded", job.log
    assert "to tcp://127.0.0.1\n" in job.log
    assert where(vm, second_host_uri) == ("absent", "running")
    assert VirtualMachine.objects.get(pk=vm.pk).host == second_host
    assert LOCAL_URI != second_host_uri


def test_an_admin_declares_a_directory_pool_shared_storage(api_for, client_for, local_host):
    pool = StoragePool.objects.create(host=local_host, name="nfs", type="dir", target_path="/x")
    lvm = StoragePool.objects.create(host=local_host, name="vg", type="logical")
    url = f"/api/v1/pools/{pool.pk}/"
    assert api_for("member").patch(url, {"shared_storage": True}, format="json").status_code in (
        403,
        404,
    )
    response = api_for("admin").patch(url, {"shared_storage": True}, format="json")
    assert response.status_code == 200 and response.json()["shared_storage"] is True
    response = api_for("admin").patch(
        f"/api/v1/pools/{lvm.pk}/", {"shared_storage": True}, format="json"
    )
    assert response.status_code == 400 and "logical pool" in response.content.decode()
    assert not StoragePool.objects.get(pk=lvm.pk).shared_storage
    page = client_for("admin")
    assert "shared storage" in page.get(f"/storage/{pool.pk}/").content.decode()
    page.post(f"/storage/{pool.pk}/shared-storage/", {"enabled": "0"})
    assert not StoragePool.objects.get(pk=pool.pk).shared_storage
    audit = AuditEvent.objects.filter(action="pool.shared_storage", result="success")
    assert [a.detail for a in audit.order_by("pk")] == [
        "declared shared storage",
        "local storage",
    ]
