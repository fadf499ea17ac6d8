"""A VM marked HA on its page (the real local libvirtd): refused while no other host
sees its disks, then marked on its domain (the mark the HA agent fences by), and the
pages say why a host without fencing never restarts it elsewhere."""

from __future__ import annotations

import subprocess
import uuid as uuidlib
from pathlib import Path

import pytest

from panel import hypervisor
from panel.models import AuditEvent, Host
from storage.models import StoragePool
from tests.conftest import LOCAL_URI

pytestmark = [pytest.mark.libvirt]

SHARED = Path("/var/lib/panel-shared")


@pytest.fixture
def shared_disk():
    SHARED.mkdir(exist_ok=True)
    path = SHARED / f"ha-page-{uuidlib.uuid4().hex[:8]}.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "8M"], check=True)
    yield path
    path.unlink(missing_ok=True)


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def test_a_vm_is_ha_only_where_another_host_sees_its_disks(client_for, make_vm, shared_disk):
    vm = make_vm(disks=(hypervisor.DiskSpec(path=str(shared_disk), format="raw"),))
    operator = client_for("operator")

    response = operator.post(f"/vms/{vm.pk}/ha/", {"ha": "on"}, follow=True)
    assert "no other host to restart it on" in messages_of(response)
    other = Host.objects.create(name="other", uri="test:///default", state="up")
    pool = StoragePool.objects.create(
        host=other, name="elsewhere", type="dir", state="active", target_path="/srv/other"
    )
    response = operator.post(f"/vms/{vm.pk}/ha/", {"ha": "on"}, follow=True)
    assert f"no other host sees {shared_disk} at the same path" in messages_of(response)
    vm.refresh_from_db()
    assert vm.ha is False
    assert "urn:kvm-panel:ha" not in hypervisor.domain_xml(LOCAL_URI, str(vm.pk), inactive=True)

    pool.target_path = str(SHARED)
    pool.save()
    response = operator.post(f"/vms/{vm.pk}/ha/", {"ha": "on"}, follow=True)
    assert f"{vm.name} is HA." in messages_of(response)
    assert "local has no fencing" in response.content.decode()
    vm.refresh_from_db()
    assert vm.ha and "urn:kvm-panel:ha" in vm.ha_definition
    assert "urn:kvm-panel:ha" in hypervisor.domain_xml(LOCAL_URI, str(vm.pk), inactive=True)
    assert AuditEvent.objects.filter(action="vm.ha", detail="on", result="success").exists()

    host_page = client_for("admin").get(f"/hosts/{vm.host_id}/").content.decode()
    assert "its HA VMs are never restarted elsewhere" in host_page

    response = operator.post(f"/vms/{vm.pk}/ha/", {}, follow=True)
    assert f"{vm.name} is not HA." in messages_of(response)
    assert "urn:kvm-panel:ha" not in hypervisor.domain_xml(LOCAL_URI, str(vm.pk), inactive=True)
