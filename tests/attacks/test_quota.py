"""Attack: grow past the quota after creation.

The quota was checked when a VM was created, and nowhere after. An operator of alpha
tunes a VM up to 8 vCPUs and 4 GiB (raising its maximums first, then its current values)
in a project allowed 2 vCPUs and 256 MiB; a member raises a VM made from a template past
the template's limits; and backups and snapshots fill the pools without counting at all.

What the panel does: the quota counts each VM at what it may grow to (its maximum vCPUs
and memory), so raising a maximum past the quota is refused (403, audited), and raising a
current value is refused while the project is over its quota; a VM keeps the limits of
the template it was made from (400). Backups and snapshots count against the project's
backup quota (``backup_gib``, shown on the project page and in the API like the others):
one being taken counts the capacity of the disks it copies (and a snapshot's memory),
a finished one what it holds in the pool; one past the quota is refused (403).
"""

from __future__ import annotations

import pytest
from lxml import etree

from panel import hypervisor, quotas
from panel.models import AuditEvent, Job
from tests.attacks.media import BOOT_DISK, shared_file, unique
from tests.vms.conftest import virsh, wait_for
from vms import services as vm_services
from vms.models import Backup, Template, VirtualMachine

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


def set_quota(project, **limits) -> None:
    quota = quotas.quota_of(project)
    for field, value in limits.items():
        setattr(quota, field, value)
    quota.save()


def definition(vm) -> etree._Element:
    return etree.fromstring(virsh("dumpxml", "--inactive", str(vm.pk)).encode())


def max_vcpus(vm) -> int:
    return int(definition(vm).findtext("vcpu"))


def vcpus(vm) -> int:
    element = definition(vm).find("vcpu")
    return int(element.get("current", element.text))


def memory_kib(vm, element: str = "memory") -> int:
    return int(definition(vm).findtext(element))


def tune(attacker, vm, what: str, **body):
    return attacker.api("POST", f"vms/{vm.pk}/tuning/{what}/", json=body)


def denied(action: str, user) -> bool:
    return AuditEvent.objects.filter(action=action, user=user, result="denied").exists()


def wait_job(job_id: int) -> Job:
    assert wait_for(lambda: Job.objects.get(pk=job_id).is_finished, timeout=180)
    job = Job.objects.get(pk=job_id)
    assert job.state == "succeeded", job.log
    return job


def test_it_refuses_raising_max_vcpus_past_the_quota(attacker, people, make_vm):
    vm = make_vm()
    set_quota(people.alpha, vcpus=2)
    response = tune(attacker("operator"), vm, "max-vcpus", max_vcpus=8)
    assert response.status_code == 403, response.text
    assert "vCPUs would be 8 of 2" in response.json()["detail"]
    assert max_vcpus(vm) == 1
    assert denied("vm.max_vcpus", people["operator"])


def test_it_refuses_raising_max_memory_past_the_quota(attacker, people, make_vm):
    vm = make_vm()
    set_quota(people.alpha, memory_mib=256)
    response = tune(attacker("operator"), vm, "max-memory", max_memory_mib=4096)
    assert response.status_code == 403, response.text
    assert memory_kib(vm) == 96 * 1024
    assert denied("vm.max_memory", people["operator"])


def test_it_refuses_raising_vcpus_past_the_quota(attacker, people, make_vm):
    """The VM's maximum was raised before the quota counted it (virsh, or an older panel):
    the project is over its quota, and the vCPUs may not follow the maximum up."""
    vm = make_vm()
    virsh("setvcpus", str(vm.pk), "4", "--maximum", "--config")
    vm_services.reread(vm)
    set_quota(people.alpha, vcpus=2)
    assert quotas.usage(people.alpha).vcpus == 4  # counted at its maximum

    response = tune(attacker("operator"), vm, "vcpus", vcpus=4, live=False, persistent=True)
    assert response.status_code == 403, response.text
    assert vcpus(vm) == 1
    assert denied("vm.vcpus", people["operator"])


def test_it_refuses_raising_memory_past_the_quota(attacker, people, make_vm):
    vm = make_vm()
    virsh("setmaxmem", str(vm.pk), "512M", "--config")
    vm_services.reread(vm)
    set_quota(people.alpha, memory_mib=256)

    response = tune(attacker("operator"), vm, "memory", memory_mib=400, live=False, persistent=True)
    assert response.status_code == 403, response.text
    assert memory_kib(vm, "currentMemory") == 96 * 1024
    assert denied("vm.memory", people["operator"])


def test_it_keeps_a_vm_within_its_templates_limits(attacker, people, media_pool, created_vms):
    admin = people["admin"]
    image = shared_file(media_pool, BOOT_DISK, "tpl-base.img", admin)
    template = Template.objects.create(
        name=unique("small"),
        source="cloud-image",
        image=image,
        vcpus=1,
        memory_mib=96,
        disk_gib=1,
        max_vcpus=2,
        max_memory_mib=256,
        max_disk_gib=1,
    )
    template.projects.add(people.alpha)
    template.pools.add(media_pool)
    member = attacker("member")
    name = unique("ptatk-tpl")
    created_vms.append(name)
    response = member.api(
        "POST", "vms/", json={"template": template.pk, "project": people.alpha.pk, "name": name}
    )
    assert response.status_code == 202, response.text
    wait_job(response.json()["job"])
    vm = VirtualMachine.objects.get(name=name)
    assert vm.owner == people["member"]

    response = tune(member, vm, "max-vcpus", max_vcpus=3)
    assert response.status_code == 400, response.text
    assert "at most 2 vCPUs" in response.json()["max_vcpus"][0]
    response = tune(member, vm, "max-memory", max_memory_mib=1024)
    assert response.status_code == 400, response.text
    assert "at most 256 MiB" in response.json()["max_memory_mib"][0]
    assert (max_vcpus(vm), memory_kib(vm)) == (1, 96 * 1024)
    # Within the limits, tuning works.
    assert tune(member, vm, "max-vcpus", max_vcpus=2).status_code == 200
    assert max_vcpus(vm) == 2


@pytest.fixture
def vm_with_disk(make_vm, make_volume, people):
    """make_vm with a thin 2 GiB qcow2 data disk of alpha."""

    def make(**kwargs):
        disk = make_volume(people.alpha, "member", fmt="qcow2", capacity_gib=2)
        return make_vm(disks=(hypervisor.DiskSpec(path=disk.path, format="qcow2"),), **kwargs)

    return make


def test_it_counts_backups_and_refuses_one_past_the_backup_quota(
    attacker, people, media_pool, vm_with_disk
):
    vm = vm_with_disk()
    set_quota(people.alpha, backup_gib=2)
    operator = attacker("operator")

    first = operator.api("POST", f"vms/{vm.pk}/backups/", json={"pool": media_pool.pk})
    assert first.status_code == 202, first.text  # may take 2 GiB: within the quota
    wait_job(first.json()["job"])
    usage = operator.api("GET", f"projects/{people.alpha.pk}/").json()["usage"]
    assert usage["backup_gib"] == 1  # the thin copy, rounded up to a whole GiB
    page = attacker("viewer").page(f"/projects/{people.alpha.pk}/")
    assert "backups and snapshots (GiB)" in page.text and "1 of 2" in page.text

    second = operator.api("POST", f"vms/{vm.pk}/backups/", json={"pool": media_pool.pk})
    assert second.status_code == 403, second.text
    assert "backups and snapshots (GiB) would be 3 of 2" in second.json()["detail"]
    assert Backup.objects.filter(vm=vm).count() == 1
    assert denied("vm.backup.create", people["operator"])


def test_it_counts_snapshots_and_refuses_one_past_the_backup_quota(attacker, people, vm_with_disk):
    vm = vm_with_disk(running=True)
    set_quota(people.alpha, backup_gib=2)
    operator = attacker("operator")
    url = f"vms/{vm.pk}/snapshots/"

    first = operator.api("POST", url, json={"name": "s1", "kind": "external"})
    assert first.status_code == 202, first.text
    wait_job(first.json()["job"])
    assert quotas.usage(people.alpha).backup_gib == 1  # the overlay, rounded up

    second = operator.api("POST", url, json={"name": "s2", "kind": "external"})
    assert second.status_code == 403, second.text
    assert virsh("snapshot-list", str(vm.pk), "--name").split() == ["s1"]
    assert denied("vm.snapshot.create", people["operator"])


def test_it_refuses_a_backup_bigger_than_the_whole_backup_quota(
    attacker, people, media_pool, vm_with_disk
):
    vm = vm_with_disk()
    set_quota(people.alpha, backup_gib=1)
    response = attacker("operator").api(
        "POST", f"vms/{vm.pk}/backups/", json={"pool": media_pool.pk}
    )
    assert response.status_code == 403, response.text
    assert not Backup.objects.exists()
