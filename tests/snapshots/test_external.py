"""External snapshots on the real libvirtd: a chain of two disk-only snapshots of the running
tiny guest, shown as backing chains; revert done by the panel (libvirt 9.0 refuses) keeping
or discarding the later overlays, with the disk's content read back through the console."""

from __future__ import annotations

import os

import pytest

from tests.snapshots.conftest import open_shell, post, run_job, shell, snapshots, virsh
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]


def write_disk(console, word: str) -> None:
    """Write word at the start of the guest's data disk and flush it to the image."""
    shell(console, f"echo {word} > /dev/vda; sync; echo done")


def read_disk(console) -> str:
    return shell(console, "head -c 5 /dev/vda")


def source(vm) -> str:
    return next(
        d["source"] for d in VirtualMachine.objects.get(pk=vm.pk).disks if d["target"] == "vda"
    )


def test_it_keeps_a_chain_of_external_snapshots_and_reverts_to_them(make_vm, admin_client):
    vm = make_vm(start=True)
    base = source(vm)
    url = f"/api/v1/vms/{vm.pk}/snapshots/"
    console = open_shell(vm)
    write_disk(console, "first")
    run_job(post(admin_client, url, {"name": "e1", "kind": "external"}))
    write_disk(console, "secnd")
    run_job(post(admin_client, url, {"name": "e2", "kind": "external"}))
    write_disk(console, "third")
    assert read_disk(console) == "third"
    console.close()

    e1, e2 = snapshots(admin_client, vm)
    assert (e1["name"], e1["kind"], e1["state"], e1["parent"]) == (
        "e1",
        "external",
        "disk-snapshot",
        None,
    )
    assert (e2["name"], e2["parent"], e2["depth"], e2["current"]) == ("e2", "e1", 1, True)
    overlay1, overlay2 = e1["disks"][0]["file"], e2["disks"][0]["file"]
    assert source(vm) == overlay2
    assert e2["disks"][0]["chain"] == [overlay2, overlay1, base]
    assert e1["disks"][0]["chain"] == [overlay1, base]
    assert e1["size"] > 0

    # libvirt 9.0 cannot revert to an external snapshot: the panel does it.
    job = run_job(post(admin_client, f"{url}e1/revert/", {"start": True}))
    assert "new overlay" in job.log and "redefined" in job.log
    assert VirtualMachine.objects.get(pk=vm.pk).state == "running"
    first_revert = source(vm)
    assert first_revert not in (base, overlay1, overlay2)
    console = open_shell(vm)
    assert read_disk(console) == "first"
    console.close()
    tree = snapshots(admin_client, vm)
    assert [(s["name"], s["current"]) for s in tree] == [("e1", True), ("e2", False)]
    assert os.path.exists(overlay2)  # kept: e2 can still be reverted to

    run_job(post(admin_client, f"{url}e2/revert/", {"start": True}))
    console = open_shell(vm)
    assert read_disk(console) == "secnd"
    console.close()

    job = run_job(post(admin_client, f"{url}e1/revert/", {"start": True, "discard_later": True}))
    assert "snapshot e2 discarded" in job.log
    assert [s["name"] for s in snapshots(admin_client, vm)] == ["e1"]
    assert virsh("snapshot-list", str(vm.pk), "--name").split() == ["e1"]
    assert not os.path.exists(overlay2) and not os.path.exists(overlay1)
    assert not os.path.exists(first_revert)
    assert os.path.exists(base)
    console = open_shell(vm)
    assert read_disk(console) == "first"
    console.close()


def test_it_refuses_to_quiesce_without_a_guest_agent(make_vm, admin_client):
    vm = make_vm(start=True)
    response = post(
        admin_client,
        f"/api/v1/vms/{vm.pk}/snapshots/",
        {"name": "q", "kind": "external", "quiesce": True},
    )
    assert response.status_code == 400
    assert "No guest agent answers" in response.json()["quiesce"][0]
    assert virsh("snapshot-list", str(vm.pk), "--name").strip() == ""
