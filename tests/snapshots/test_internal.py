"""Internal snapshots on the real libvirtd with the tiny guest (qcow2 data disk): a memory
checkpoint undoes a file written to the guest's RAM filesystem; a three-level tree; deleting
the middle snapshot re-parents its child; revert with and without start."""

from __future__ import annotations

import pytest

from panel.models import AuditEvent
from tests.snapshots.conftest import open_shell, post, run_job, shell, snapshots, virsh
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


def test_it_reverts_a_memory_snapshot_and_the_file_written_after_it_is_gone(make_vm, admin_client):
    vm = make_vm(start=True)
    console = open_shell(vm)
    assert shell(console, "ls /panel-marker 2>/dev/null") == ""

    url = f"/api/v1/vms/{vm.pk}/snapshots/"
    job = run_job(post(admin_client, url, {"name": "before", "description": "clean"}))
    assert "with memory" in job.log
    [snap] = snapshots(admin_client, vm)
    assert (snap["name"], snap["state"], snap["kind"]) == ("before", "running", "internal")
    assert snap["memory"] and snap["current"] and snap["parent"] is None
    assert snap["description"] == "clean" and snap["size"] > 0 and snap["created"]
    assert AuditEvent.objects.filter(action="vm.snapshot.create", target=vm.name).exists()

    shell(console, "echo written > /panel-marker")
    assert shell(console, "cat /panel-marker") == "written"
    console.close()

    run_job(post(admin_client, f"{url}before/revert/", {"start": True}))
    vm.refresh_from_db()
    assert vm.state == "running"
    console = open_shell(vm, booting=False)
    assert shell(console, "ls /panel-marker 2>/dev/null") == ""
    assert shell(console, "echo $((6 * 7))") == "42"  # the guest still answers
    console.close()
    assert AuditEvent.objects.filter(action="vm.snapshot.revert", target=vm.name).exists()


def test_it_keeps_a_three_level_tree_and_re_parents_the_child_of_a_deleted_snapshot(
    make_vm, admin_client
):
    vm = make_vm(start=False)
    url = f"/api/v1/vms/{vm.pk}/snapshots/"
    for name in ("s1", "s2", "s3"):
        run_job(post(admin_client, url, {"name": name}))
    tree = snapshots(admin_client, vm)
    assert [(s["name"], s["parent"], s["depth"]) for s in tree] == [
        ("s1", None, 0),
        ("s2", "s1", 1),
        ("s3", "s2", 2),
    ]
    assert [s["name"] for s in tree if s["current"]] == ["s3"]
    assert {s["state"] for s in tree} == {"shutoff"} and not any(s["memory"] for s in tree)

    # Off at s1, revert with start: the VM runs afterwards.
    run_job(post(admin_client, f"{url}s1/revert/", {"start": True}))
    assert VirtualMachine.objects.get(pk=vm.pk).state == "running"
    assert [s["name"] for s in snapshots(admin_client, vm) if s["current"]] == ["s1"]

    response = admin_client.delete(f"{url}s2/")
    run_job(response)
    tree = snapshots(admin_client, vm)
    assert [(s["name"], s["parent"], s["depth"]) for s in tree] == [
        ("s1", None, 0),
        ("s3", "s1", 1),
    ]
    assert "s3" in virsh("snapshot-list", str(vm.pk), "--tree").split("|", 1)[1]
    assert virsh("snapshot-parent", str(vm.pk), "s3").strip() == "s1"
    assert admin_client.get(f"{url}s2/").status_code == 404
    assert admin_client.get(f"{url}s3/").json()["parent"] == "s1"

    # Revert to a snapshot of a shut-off VM without start: it is off again.
    run_job(post(admin_client, f"{url}s3/revert/", {"start": False}))
    assert VirtualMachine.objects.get(pk=vm.pk).state == "shutoff"

    run_job(admin_client.delete(f"{url}s1/?children=true"))
    assert snapshots(admin_client, vm) == []
    assert virsh("snapshot-list", str(vm.pk), "--name").strip() == ""
