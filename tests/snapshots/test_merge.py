"""Merging external snapshot chains on the real libvirtd: block commit (active, with pivot,
and of a middle layer) and block pull, the chain shortened, the snapshots the merge
overwrote forgotten, and the guest's disk content read back through its console."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from panel.models import AuditEvent, Job
from tests.snapshots.conftest import open_shell, post, run_job, snapshots, virsh
from tests.snapshots.test_external import read_disk, source, write_disk
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]


def backing(path: str) -> str:
    out = subprocess.run(
        ["qemu-img", "info", "--force-share", "--output=json", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out).get("backing-filename", "")


def chain_of_two(admin_client, vm) -> tuple[str, str, str]:
    """first | e1 | secnd | e2 | third: returns the base and both overlays."""
    url = f"/api/v1/vms/{vm.pk}/snapshots/"
    base = source(vm)
    console = open_shell(vm)
    write_disk(console, "first")
    run_job(post(admin_client, url, {"name": "e1", "kind": "external"}))
    write_disk(console, "secnd")
    run_job(post(admin_client, url, {"name": "e2", "kind": "external"}))
    write_disk(console, "third")
    console.close()
    e1, e2 = snapshots(admin_client, vm)
    overlay1, overlay2 = e1["disks"][0]["file"], e2["disks"][0]["file"]
    assert e2["disks"][0]["chain"] == [overlay2, overlay1, base]
    return base, overlay1, overlay2


def test_it_reverts_then_commits_the_chain_into_its_base(make_vm, admin_client):
    vm = make_vm(start=True)
    base, overlay1, overlay2 = chain_of_two(admin_client, vm)
    run_job(post(admin_client, f"/api/v1/vms/{vm.pk}/snapshots/e1/revert/", {"start": True}))
    reverted = source(vm)
    assert backing(reverted) == base
    console = open_shell(vm)
    assert read_disk(console) == "first"
    write_disk(console, "fourt")
    console.close()

    job = run_job(post(admin_client, f"/api/v1/vms/{vm.pk}/disks/vda/merge/", {}))
    assert job.kind == "vm.snapshot.merge"
    assert f"committed {reverted} into {base} and pivoted onto it" in job.log
    assert "chain now: " + base in job.log
    assert source(vm) == base
    assert backing(base) == ""  # the chain is one image long
    inactive = virsh("dumpxml", "--inactive", str(vm.pk))
    assert f"file='{base}'" in inactive and reverted not in inactive
    # Both snapshots' state was in the base that the commit overwrote: they are forgotten,
    # and their overlays, which nothing uses any more, deleted.
    assert snapshots(admin_client, vm) == []
    assert virsh("snapshot-list", str(vm.pk), "--name").strip() == ""
    assert not any(os.path.exists(p) for p in (overlay1, overlay2, reverted))
    console = open_shell(vm, booting=False)
    assert read_disk(console) == "fourt"
    console.close()
    assert AuditEvent.objects.filter(action="vm.snapshot.merge", result="success").exists()


def test_it_pulls_into_the_active_image_and_keeps_the_snapshots(make_vm, admin_client):
    vm = make_vm(start=True)
    base, overlay1, overlay2 = chain_of_two(admin_client, vm)
    job = run_job(
        post(admin_client, f"/api/v1/vms/{vm.pk}/disks/vda/merge/", {"mode": "pull", "base": base})
    )
    assert f"pulled {overlay1} into {overlay2}" in job.log
    assert source(vm) == overlay2 and backing(overlay2) == base
    progress = Job.objects.get(pk=job.pk).progress
    assert progress == 100
    console = open_shell(vm, booting=False)
    assert read_disk(console) == "third"
    console.close()
    # A pull writes only into the active image: e2's state (overlay1) is intact.
    assert [s["name"] for s in snapshots(admin_client, vm)] == ["e1", "e2"]
    run_job(post(admin_client, f"/api/v1/vms/{vm.pk}/snapshots/e2/revert/", {"start": True}))
    console = open_shell(vm)
    assert read_disk(console) == "secnd"
    console.close()


def test_it_commits_a_middle_layer_and_refuses_what_it_cannot_merge(make_vm, admin_client):
    vm = make_vm(start=True)
    url = f"/api/v1/vms/{vm.pk}/disks/vda/merge/"
    assert post(admin_client, url, {}).status_code == 409  # no chain yet
    base, overlay1, overlay2 = chain_of_two(admin_client, vm)
    cases = [
        ({"mode": "sideways"}, "mode"),
        ({"base": "/etc/passwd"}, "base"),
        ({"top": base}, "top"),
        ({"mode": "pull", "top": overlay1}, "top"),
        ({"top": overlay1, "base": overlay2}, "base"),
    ]
    for body, field in cases:
        response = post(admin_client, url, body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), (body, response.json())
    response = post(admin_client, f"/api/v1/vms/{vm.pk}/disks/vdz/merge/", {})
    assert response.status_code == 400 and "no disk 'vdz'" in response.json()["disk"][0]
    assert not Job.objects.filter(kind="vm.snapshot.merge").exists()

    job = run_job(post(admin_client, url, {"top": overlay1}))
    assert "pivoted" not in job.log
    assert source(vm) == overlay2 and backing(overlay2) == base
    assert not os.path.exists(overlay1)
    assert snapshots(admin_client, vm) == []
    console = open_shell(vm, booting=False)
    assert read_disk(console) == "third"
    console.close()

    busy = Job.objects.create(kind="vm.clone", target=f"vm:{vm.pk}", state="running")
    response = post(admin_client, url, {"mode": "pull"})
    assert response.status_code == 409 and f"busy: job #{busy.pk} " in response.json()["detail"]
    busy.delete()

    hypervisor_off = post(admin_client, f"/api/v1/vms/{vm.pk}/force-off/")
    assert hypervisor_off.status_code == 200, hypervisor_off.content  # a direct action
    assert VirtualMachine.objects.get(pk=vm.pk).state == "shutoff"
    response = post(admin_client, url, {})
    assert response.status_code == 409 and "Start it first" in response.json()["detail"]
