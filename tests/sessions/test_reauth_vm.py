"""Deleting a VM with its storage asks for the password again (page and API), on a real
tiny guest with two real volumes; deleting it without its storage does not."""

from __future__ import annotations

import time

import pytest

from panel import hypervisor
from panel.identity.policy import AUTH_AT
from panel.identity.reauth import API_REFUSAL
from panel.models import Job
from tests.vms.conftest import (  # noqa: F401 - fixtures used here
    PASSWORDS,
    api_for,
    client_for,
    define_guest,
    local_host,
    make_vm,
    people,
    scratch_pool,
)
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


@pytest.fixture
def vm_with_volumes(make_vm, scratch_pool) -> VirtualMachine:  # noqa: F811
    vdb = scratch_pool.add_volume("vol1.qcow2")
    return make_vm(disks=(hypervisor.DiskSpec(path=vdb, target="vdb", format="qcow2"),))


def make_stale(client) -> None:
    session = client.session
    session[AUTH_AT] = time.time() - 301
    session.save()


def test_the_delete_page_asks_for_the_password_before_removing_storage(
    vm_with_volumes,
    client_for,  # noqa: F811
):
    vm = vm_with_volumes
    client = client_for("member")
    make_stale(client)

    asked = client.post(f"/vms/{vm.pk}/delete/", {"remove": ["vdb"]})

    assert asked.url == f"/account/reauth/?next=%2Fvms%2F{vm.pk}%2Fdelete%2F"
    assert not Job.objects.filter(kind="vm.delete").exists()
    back = client.post(
        "/account/reauth/", {"password": PASSWORDS["member"], "next": f"/vms/{vm.pk}/delete/"}
    )
    assert back.url == f"/vms/{vm.pk}/delete/"
    done = client.post(f"/vms/{vm.pk}/delete/", {"remove": ["vdb"]})
    job = Job.objects.get(kind="vm.delete")
    assert done.url == f"/jobs/{job.pk}/"


def test_the_delete_page_keeps_the_storage_without_asking(vm_with_volumes, client_for):  # noqa: F811
    vm = vm_with_volumes
    client = client_for("member")
    make_stale(client)

    response = client.post(f"/vms/{vm.pk}/delete/")

    job = Job.objects.get(kind="vm.delete")
    assert response.url == f"/jobs/{job.pk}/"


def test_the_api_refuses_to_delete_storage_without_the_password(vm_with_volumes, api_for):  # noqa: F811
    vm = vm_with_volumes
    api = api_for("member")

    refused = api.delete(f"/api/v1/vms/{vm.pk}/?remove_storage=true")
    done = api.delete(
        f"/api/v1/vms/{vm.pk}/?remove_storage=true",
        headers={"X-Panel-Password": PASSWORDS["member"]},
    )

    assert (refused.status_code, refused.data["detail"]) == (403, API_REFUSAL)
    assert done.status_code == 202, done.data
    assert Job.objects.get(pk=done.data["job"]).kind == "vm.delete"
    assert VirtualMachine.objects.filter(pk=vm.pk).exists()  # the job's to remove it
