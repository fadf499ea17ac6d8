"""Pool XML for every libvirt pool type, defined on the test:/// driver and read back,
plus an LVM pool on a loop device on the real libvirtd where the machine allows it."""

from __future__ import annotations

import contextlib
import subprocess
import uuid as uuidlib

import pytest
from lxml import etree

from panel.actors import Actor
from panel.hypervisor import storage as hv
from panel.models import Host
from storage import services
from storage.models import StoragePool
from tests.conftest import LOCAL_URI, require
from tests.storage.conftest import MIB, virsh

TEST_URI = "test:///default"

TYPES = {
    "fs": (
        {"source_devices": "/dev/sdz1", "source_format": "xfs", "target_path": "/srv/libvirt/fs"},
        {
            "source/device/@path": "/dev/sdz1",
            "source/format/@type": "xfs",
            "target/path": "/srv/libvirt/fs",
        },
    ),
    "netfs": (
        {
            "source_host": "nfs.example.test",
            "source_path": "/exports/vms",
            "source_format": "nfs",
            "target_path": "/srv/libvirt/nfs",
        },
        {
            "source/host/@name": "nfs.example.test",
            "source/dir/@path": "/exports/vms",
            "source/format/@type": "nfs",
            "target/path": "/srv/libvirt/nfs",
        },
    ),
    "logical": (
        {"source_name": "vg_guests", "source_devices": "/dev/sdy"},
        {
            "source/name": "vg_guests",
            "source/device/@path": "/dev/sdy",
            "target/path": "/dev/vg_guests",
        },
    ),
    "disk": (
        {"source_devices": "/dev/sdx", "source_format": "gpt"},
        {"source/device/@path": "/dev/sdx", "source/format/@type": "gpt"},
    ),
    "iscsi": (
        {
            "source_host": "san.example.test",
            "source_port": "3260",
            "source_path": "iqn.2026-01.test.example:store",
        },
        {
            "source/host/@name": "san.example.test",
            "source/host/@port": "3260",
            "source/device/@path": "iqn.2026-01.test.example:store",
            "target/path": "/dev/disk/by-path",
        },
    ),
    "iscsi-direct": (
        {
            "source_host": "san.example.test",
            "source_path": "iqn.2026-01.test.example:store",
            "initiator": "iqn.2026-01.test.example:panel",
        },
        {
            "source/host/@name": "san.example.test",
            "source/device/@path": "iqn.2026-01.test.example:store",
            "source/initiator/iqn/@name": "iqn.2026-01.test.example:panel",
        },
    ),
    "scsi": (
        {"adapter": "host3"},
        {
            "source/adapter/@name": "host3",
            "source/adapter/@type": "scsi_host",
            "target/path": "/dev/disk/by-path",
        },
    ),
    "mpath": ({}, {"target/path": "/dev/mapper"}),
    "rbd": (
        {"source_host": "mon.example.test", "source_port": "6789", "source_name": "rbd-vms"},
        {"source/host/@name": "mon.example.test", "source/name": "rbd-vms"},
    ),
    "gluster": (
        {"source_host": "gluster.example.test", "source_name": "gv0", "source_path": "/vms"},
        {
            "source/host/@name": "gluster.example.test",
            "source/name": "gv0",
            "source/dir/@path": "/vms",
        },
    ),
    "zfs": (
        {"source_name": "tank", "source_devices": "/dev/sdw"},
        {"source/name": "tank", "source/device/@path": "/dev/sdw"},
    ),
}


@pytest.fixture
def test_host(db) -> Host:
    return Host.objects.create(name="sim", uri=TEST_URI, state="up")


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_each_pool_type_gets_exactly_its_fields(test_host, admin_user, settings, kind):
    settings.PANEL_STORAGE_ROOTS = ["/srv/libvirt"]
    fields, expected = TYPES[kind]
    name = f"pt-{kind}-{uuidlib.uuid4().hex[:6]}"
    pool = services.create_pool(
        test_host,
        {"name": name, "type": kind, **fields},
        build=False,
        start=False,
        actor=Actor(admin_user),
    )
    try:
        root = etree.fromstring(hv.pool_xml(TEST_URI, name).encode())
        assert root.get("type") == kind
        for path, value in expected.items():
            element_path, _, attr = path.partition("/@")
            element = root.find(element_path)
            assert element is not None, (
                f"{kind}: no {element_path} in\n{etree.tostring(root).decode()}"
            )
            assert (element.get(attr) if attr else element.text) == value, path
        if kind in ("iscsi-direct", "rbd", "gluster"):
            assert root.find("target/path") is None
        assert StoragePool.objects.get(pk=pool.pk).type == kind
    finally:
        hv.delete_pool(TEST_URI, name)


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("netfs", {"source_path": "/x", "target_path": "/srv/libvirt/n"}, "needs server"),
        ("logical", {}, "needs name"),
        ("scsi", {}, "needs scsi adapter"),
        (
            "fs",
            {"source_devices": "sdb", "target_path": "/srv/libvirt/f"},
            "not a clean absolute path",
        ),
        (
            "fs",
            {"source_devices": "/etc/passwd", "target_path": "/srv/libvirt/f"},
            "not a device path",
        ),
        ("disk", {"source_devices": "/dev/sdb", "source_format": "hfs"}, "not a format"),
        (
            "iscsi",
            {"source_host": "san", "source_port": "99999", "source_path": "iqn.x"},
            "between 1 and 65535",
        ),
        (
            "netfs",
            {"source_host": "a<b>", "source_path": "/x", "target_path": "/srv/libvirt/n"},
            "not allowed",
        ),
        ("floppy", {}, "Unknown pool type"),
    ],
)
def test_bad_pool_fields_are_refused_and_nothing_is_defined(
    test_host, admin_user, settings, kind, fields, message
):
    settings.PANEL_STORAGE_ROOTS = ["/srv/libvirt"]
    before = virsh_pools(TEST_URI)
    with pytest.raises(services.ServiceError, match=message):
        services.create_pool(
            test_host,
            {"name": "bad", "type": kind, **fields},
            build=False,
            start=False,
            actor=Actor(admin_user),
        )
    assert virsh_pools(TEST_URI) == before
    assert not StoragePool.objects.filter(name="bad").exists()


def virsh_pools(uri: str) -> set[str]:
    from panel.hypervisor import list_pools

    return {p.name for p in list_pools(uri)}


@pytest.fixture
def loop_device(tmp_path):
    """A 64 MiB loop device, for a real volume group."""
    losetup = require("losetup", "mount")
    require("vgcreate", "lvm2")
    backing = tmp_path / "pv.img"
    subprocess.run(["truncate", "-s", "64M", str(backing)], check=True)
    attached = subprocess.run(
        [losetup, "--find", "--show", str(backing)], capture_output=True, text=True
    )
    if attached.returncode != 0:
        pytest.fail(f"losetup could not attach a loop device: {attached.stderr.strip()}")
    loop = attached.stdout.strip()
    try:
        yield loop
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True)


@pytest.fixture
def lvm_pool(db, admin_user, loop_device):
    """A logical pool whose volume group libvirt builds on the loop device."""
    vg = f"ptvg{uuidlib.uuid4().hex[:6]}"
    host = Host.objects.create(name="local", uri=LOCAL_URI, state="up")
    try:
        yield services.create_pool(
            host,
            {"name": vg, "type": "logical", "source_name": vg, "source_devices": loop_device},
            actor=Actor(admin_user),
        )
    finally:
        with contextlib.suppress(Exception):
            hv.delete_pool(LOCAL_URI, vg, delete_target=True)
        subprocess.run(["vgremove", "-f", vg], capture_output=True)


@pytest.mark.libvirt
@pytest.mark.timeout(120)
def test_an_lvm_pool_is_built_on_a_loop_device_and_deleted_with_its_vg(lvm_pool, admin_user):
    vg = lvm_pool.name
    assert lvm_pool.state == "active"
    assert lvm_pool.target_path == f"/dev/{vg}"
    assert 32 * MIB < lvm_pool.capacity <= 64 * MIB
    assert subprocess.run(["vgs", vg], capture_output=True).returncode == 0

    services.delete_pool(lvm_pool, actor=Actor(admin_user), delete_target=True)

    assert subprocess.run(["vgs", vg], capture_output=True).returncode != 0
    assert vg not in virsh("pool-list", "--all", "--name").split()


@pytest.mark.libvirt
@pytest.mark.timeout(120)
def test_a_logical_volume_in_the_lvm_pool(lvm_pool, admin_user):
    dmsetup = require("dmsetup", "dmsetup")
    probe = subprocess.run([dmsetup, "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        # Allowed in tests/skips.py (the reason must stay word for word): the one gap
        # this machine cannot close. What dmsetup said goes to the captured output.
        print(f"dmsetup version: {probe.stdout}{probe.stderr}")
        pytest.skip(
            "the kernel's device-mapper driver is not available here, "
            "so LVM builds the volume group but cannot create logical volumes"
        )
    volume = services.create_volume(
        lvm_pool,
        name="lv0",
        format="raw",
        capacity_gib=8 / 1024,
        preallocation="falloc",
        actor=Actor(admin_user),
    )
    assert volume.path == f"/dev/{lvm_pool.name}/lv0"
    assert "lv0" in subprocess.run(["lvs", lvm_pool.name], capture_output=True, text=True).stdout
    services.delete_volume(volume, actor=Actor(admin_user))
    assert (
        "lv0" not in subprocess.run(["lvs", lvm_pool.name], capture_output=True, text=True).stdout
    )
