"""A create that names no host, on the two real hosts: placed on the host that holds its
pool (not on the one with more free memory), refused with each host's reason, and kept
apart from its affinity group."""

from __future__ import annotations

import pytest

from panel.models import AuditEvent, Job
from tests.placement.conftest import GUEST_DIR, facts, kernel_vm
from vms.models import AffinityGroup, VirtualMachine
from vms.tasks import vm_create_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


def test_it_places_a_vm_on_the_host_that_holds_its_pool(
    api_for, alpha, local_host, second_host, local_pool, panel_test_guest
):
    facts(local_host, 4)
    facts(second_host, 12)  # more free memory, but no such pool
    response = api_for("admin").post(
        "/api/v1/vms/", kernel_vm(alpha, "ptc-placed", local_pool), format="json"
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.host == local_host
    vm_create_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.log
    vm = VirtualMachine.objects.get(pk=response.json()["id"])
    assert (vm.host, vm.state) == (local_host, "running")


def test_a_create_nowhere_to_go_says_why_for_each_host(
    api_for, alpha, local_host, second_host, local_pool
):
    facts(local_host, 4)
    facts(second_host, 12)
    local_host.maintenance = True
    local_host.save()
    response = api_for("admin").post(
        "/api/v1/vms/", kernel_vm(alpha, "ptc-nowhere", local_pool), format="json"
    )
    assert response.status_code == 409, response.content
    assert response.json()["detail"] == (
        "ptc-nowhere has nowhere to go: No host can take it (host local: in maintenance; "
        f"host second: no pool '{local_pool.name}')."
    )
    assert not Job.objects.exists()
    assert AuditEvent.objects.filter(action="vm.create", result="failure").exists()


def test_an_apart_group_refuses_a_second_vm_on_the_one_usable_host(
    api_for, alpha, local_host, second_host, make_vm, local_pool
):
    facts(local_host, 4)
    facts(second_host, 12)
    first = make_vm(running=False)
    group = AffinityGroup.objects.create(project=alpha, name="web", kind="apart")
    group.vms.add(first)
    body = kernel_vm(alpha, "ptc-apart", local_pool, affinity_group=group.pk)
    response = api_for("operator").post("/api/v1/vms/", body, format="json")
    assert response.status_code == 409, response.content
    assert (
        f"host local: runs {first.name} of group 'web' (kept apart)" in (response.json()["detail"])
    )
    # Naming the host does not get round the rule.
    body["host"] = local_host.pk
    response = api_for("operator").post("/api/v1/vms/", body, format="json")
    assert response.status_code == 409, response.content
    assert response.json()["detail"] == (
        f"ptc-apart cannot go to local: runs {first.name} of group 'web' (kept apart)."
    )
    assert not Job.objects.exists()


def test_the_wizard_offers_the_groups_and_keeps_their_rule(
    client_for, alpha, local_host, second_host, make_vm, local_pool
):
    facts(local_host, 4)
    facts(second_host, 12)
    first = make_vm(running=False)
    group = AffinityGroup.objects.create(project=alpha, name="web", kind="apart")
    group.vms.add(first)
    operator = client_for("operator")
    assert 'name="affinity_group"' in operator.get("/vms/new/").content.decode()
    form = {
        "name": "ptc-wizard",
        "project": alpha.pk,
        "host": "",
        "affinity_group": group.pk,
        "vcpus": 1,
        "memory_mib": 96,
        "disk_pool": local_pool.pk,
        "disk_size_gib": "0.02",
        "method": "kernel",
        "kernel": f"{GUEST_DIR}/vmlinuz",
        "initrd": f"{GUEST_DIR}/initrd.img",
        "cmdline": "console=ttyS0",
    }
    response = operator.post("/vms/new/", form)
    assert response.status_code == 400
    page = response.content.decode()
    assert f"host local: runs {first.name} of group &#x27;web&#x27; (kept apart)" in page
    assert not Job.objects.exists()
