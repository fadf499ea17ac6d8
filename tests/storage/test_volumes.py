"""Pools and volumes on the real libvirtd, through the panel's services and API."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from panel.actors import Actor
from panel.models import Job
from storage import services
from storage.models import StoragePool, Volume
from storage.tasks import volume_job_task
from tests.storage.conftest import MIB, allocated_bytes, qemu_img_info, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def test_a_dir_pool_is_built_started_and_seen_by_libvirt(dir_pool, pool_dir):
    assert pool_dir.is_dir()
    assert dir_pool.state == "active"
    assert dir_pool.capacity > 0 and dir_pool.available > 0
    assert f"<path>{pool_dir}</path>" in virsh("pool-dumpxml", dir_pool.name)
    assert "running" in virsh("pool-info", dir_pool.name)


@pytest.mark.parametrize(
    ("fmt", "prealloc", "thick"),
    [
        ("raw", "off", False),
        ("raw", "falloc", True),
        ("raw", "full", True),
        ("qcow2", "off", False),
        ("qcow2", "metadata", False),
        ("qcow2", "falloc", True),
        ("qcow2", "full", True),
    ],
)
def test_it_creates_volumes_in_each_format_and_preallocation(
    dir_pool, admin_user, fmt, prealloc, thick
):
    result = services.create_volume(
        dir_pool,
        name=f"v-{prealloc}.{fmt}",
        format=fmt,
        capacity_gib=16 / 1024,
        preallocation=prealloc,
        actor=Actor(admin_user),
    )
    # Full preallocation (it writes every byte) runs as a job; the others are made at once.
    assert isinstance(result, Job) == (prealloc == "full"), result
    if prealloc == "full":
        volume_job_task(result.pk)
        result.refresh_from_db()
        assert result.state == "succeeded", result.message
        result = Volume.objects.get(pool=dir_pool, name=f"v-{prealloc}.{fmt}")
    info = qemu_img_info(result.path)
    assert info["format"] == fmt
    assert info["virtual-size"] == 16 * MIB
    on_disk = allocated_bytes(result.path)
    if thick:
        assert on_disk >= 16 * MIB
    else:
        assert on_disk < 2 * MIB
    if prealloc == "metadata":
        plain = services.create_volume(
            dir_pool,
            name="plain.qcow2",
            format="qcow2",
            capacity_gib=16 / 1024,
            actor=Actor(admin_user),
        )
        assert on_disk > allocated_bytes(plain.path)
    assert (result.format, result.capacity) == (fmt, 16 * MIB)


def _libvirt_capacity(pool: str, name: str) -> int:
    """A volume's capacity in bytes as libvirt reports it."""
    out = virsh("vol-info", "--bytes", "--pool", pool, name)
    (line,) = (line for line in out.splitlines() if line.startswith("Capacity:"))
    return int(line.split()[1])


def _written_bytes(path: str) -> int:
    """Bytes of data from the start of the file up to its first hole. ext4 reports space
    reserved by fallocate but never written as a hole, so a file written in full has none."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE)
    finally:
        os.close(fd)


def test_it_makes_a_full_preallocated_1_gib_raw_volume_exactly_1_gib(dir_pool, admin_user):
    gib = 1024 * MIB
    job = services.create_volume(
        dir_pool,
        name="full.img",
        format="raw",
        capacity_gib=1,
        preallocation="full",
        actor=Actor(admin_user),
    )
    volume_job_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.message
    vol = Volume.objects.get(pool=dir_pool, name="full.img")

    # The file holds exactly 1 GiB, every byte written, and libvirt and the panel say so.
    path = Path(vol.path)
    assert path.stat().st_size == gib
    assert _written_bytes(vol.path) == gib
    assert allocated_bytes(vol.path) >= gib
    assert qemu_img_info(vol.path)["virtual-size"] == gib
    assert _libvirt_capacity(dir_pool.name, "full.img") == gib
    assert vol.capacity == gib

    # Zeroing it again (a wipe) keeps it the same size.
    _write(vol.path, b"\xa5" * MIB)
    job = services.wipe_volume(vol, actor=Actor(admin_user))
    volume_job_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.message
    assert path.stat().st_size == gib
    with open(path, "rb") as f:
        assert f.read(MIB) == bytes(MIB)
    assert _libvirt_capacity(dir_pool.name, "full.img") == gib
    path.unlink()
    virsh("pool-refresh", dir_pool.name)


@pytest.mark.parametrize(("fmt", "prealloc"), [("raw", "falloc"), ("qcow2", "metadata")])
def test_it_keeps_the_size_of_other_1_gib_preallocations(dir_pool, admin_user, fmt, prealloc):
    gib = 1024 * MIB
    vol = services.create_volume(
        dir_pool,
        name=f"one.{fmt}",
        format=fmt,
        capacity_gib=1,
        preallocation=prealloc,
        actor=Actor(admin_user),
    )
    info = qemu_img_info(vol.path)
    assert (info["format"], info["virtual-size"], vol.capacity) == (fmt, gib, gib)
    assert _libvirt_capacity(dir_pool.name, vol.name) == gib
    if fmt == "raw":
        # Reserved (not written): exactly 1 GiB long, all of it allocated.
        assert Path(vol.path).stat().st_size == gib
        assert allocated_bytes(vol.path) >= gib
    else:
        # qcow2 metadata: the tables only, far less than the virtual size.
        assert allocated_bytes(vol.path) < 16 * MIB


def _write(path: str, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.write(data)


def test_resize_grows_and_clone_copies_the_content(dir_pool, admin_user):
    vol = services.create_volume(
        dir_pool, name="src.img", format="raw", capacity_gib=4 / 1024, actor=Actor(admin_user)
    )
    payload = os.urandom(MIB)
    _write(vol.path, payload)

    vol = services.resize_volume(vol, 8 / 1024, actor=Actor(admin_user))
    assert qemu_img_info(vol.path)["virtual-size"] == 8 * MIB
    assert vol.capacity == 8 * MIB

    job = services.copy_volume(vol, name="copy.img", actor=Actor(admin_user))
    volume_job_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.message
    copy = Volume.objects.get(pool=dir_pool, name="copy.img")
    assert Path(copy.path).read_bytes()[:MIB] == payload
    assert Path(copy.path).read_bytes() == Path(vol.path).read_bytes()


def test_convert_raw_to_qcow2_keeps_the_content(dir_pool, admin_user):
    vol = services.create_volume(
        dir_pool, name="disk.raw", format="raw", capacity_gib=4 / 1024, actor=Actor(admin_user)
    )
    payload = os.urandom(2 * MIB)
    _write(vol.path, payload)

    job = services.copy_volume(vol, name="disk.qcow2", format="qcow2", actor=Actor(admin_user))
    volume_job_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.message
    assert job.kind == "volume.convert"
    converted = Volume.objects.get(pool=dir_pool, name="disk.qcow2")
    assert qemu_img_info(converted.path)["format"] == "qcow2"
    back = Path(converted.path).with_suffix(".back")
    subprocess.run(
        ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", converted.path, str(back)], check=True
    )
    try:
        assert back.read_bytes()[: 2 * MIB] == payload
    finally:
        back.unlink()


def test_shrinking_needs_confirmation_and_never_applies_to_qcow2(dir_pool, admin_user):
    raw = services.create_volume(
        dir_pool, name="r.img", format="raw", capacity_gib=8 / 1024, actor=Actor(admin_user)
    )
    qcow = services.create_volume(
        dir_pool, name="q.qcow2", format="qcow2", capacity_gib=8 / 1024, actor=Actor(admin_user)
    )
    with pytest.raises(services.ServiceError, match="data there is lost"):
        services.resize_volume(raw, 4 / 1024, actor=Actor(admin_user))
    with pytest.raises(services.ServiceError, match="cannot\\s+shrink"):
        services.resize_volume(qcow, 4 / 1024, shrink=True, actor=Actor(admin_user))
    assert qemu_img_info(raw.path)["virtual-size"] == 8 * MIB
    assert qemu_img_info(qcow.path)["virtual-size"] == 8 * MIB

    raw = services.resize_volume(raw, 4 / 1024, shrink=True, actor=Actor(admin_user))
    assert qemu_img_info(raw.path)["virtual-size"] == 4 * MIB


def test_wipe_zeroes_a_raw_volume_and_empties_a_qcow2(dir_pool, admin_user):
    raw = services.create_volume(
        dir_pool, name="w.img", format="raw", capacity_gib=2 / 1024, actor=Actor(admin_user)
    )
    _write(raw.path, b"\xff" * MIB)
    job = services.wipe_volume(raw, actor=Actor(admin_user))
    volume_job_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.message
    assert Path(raw.path).read_bytes() == bytes(2 * MIB)

    qcow = services.create_volume(
        dir_pool, name="w.qcow2", format="qcow2", capacity_gib=2 / 1024, actor=Actor(admin_user)
    )
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", qcow.path],
        check=True,
        capture_output=True,
    )
    assert qemu_img_info(qcow.path)["actual-size"] > MIB
    job = services.wipe_volume(qcow, actor=Actor(admin_user))
    volume_job_task(job.pk)
    info = qemu_img_info(qcow.path)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 2 * MIB)
    assert info["actual-size"] < MIB


def test_info_and_check_show_qemu_imgs_view(dir_pool, admin_user):
    base = services.create_volume(
        dir_pool, name="base.qcow2", format="qcow2", capacity_gib=4 / 1024, actor=Actor(admin_user)
    )
    overlay = services.create_volume(
        dir_pool,
        name="overlay.qcow2",
        format="qcow2",
        backing_volume=base,
        actor=Actor(admin_user),
    )
    assert overlay.backing == [{"path": base.path, "format": "qcow2"}]
    subprocess.run(["qemu-img", "snapshot", "-c", "before", base.path], check=True)

    overlay = services.volume_details(overlay)
    chain = overlay.info["chain"]
    assert [c["path"] for c in chain] == [overlay.path, base.path]
    assert chain[0]["virtual_size"] == 4 * MIB
    assert [s["name"] for s in chain[1]["snapshots"]] == ["before"]

    overlay = services.check_volume(overlay, actor=Actor(admin_user))
    assert overlay.check_result["ok"] is True
    assert "No errors" in overlay.check_result["summary"]

    with pytest.raises(services.ConflictError, match="backing file of overlay.qcow2"):
        services.delete_volume(base, actor=Actor(admin_user))
    assert Path(base.path).exists()


def test_upload_and_download_round_trip_through_libvirt_streams(dir_pool, admin_user):
    data = os.urandom(20 * MIB)
    vol = services.create_volume(
        dir_pool, name="upload.img", format="raw", capacity_gib=20 / 1024, actor=Actor(admin_user)
    )
    job = services.start_upload(vol, len(data), actor=Actor(admin_user))
    chunks = (data[i : i + MIB] for i in range(0, len(data), MIB))
    vol = services.run_upload(job, vol, chunks, remove_on_failure=False)
    job.refresh_from_db()
    assert (job.state, job.progress) == ("succeeded", 100)

    size, stream = services.open_download(vol, actor=Actor(admin_user))
    got = b"".join(stream)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_an_aborted_upload_fails_its_job_and_removes_the_volume(dir_pool, admin_user):
    vol = services.create_volume(
        dir_pool, name="partial.iso", format="raw", capacity_gib=4 / 1024, actor=Actor(admin_user)
    )
    path = vol.path
    job = services.start_upload(vol, 4 * MIB, actor=Actor(admin_user))

    with pytest.raises(services.ServiceError, match="1048576 of 4194304"):
        services.run_upload(job, vol, iter([os.urandom(MIB)]), remove_on_failure=True)

    job.refresh_from_db()
    assert job.state == "failed"
    assert "1048576 of 4194304" in job.message
    assert not Path(path).exists()
    assert not Volume.objects.filter(pk=vol.pk).exists()


def test_deleting_a_pool_keeps_or_removes_its_directory(local_host, pool_dir, admin_user):
    pool = services.create_pool(
        local_host,
        {"name": pool_dir.name, "type": "dir", "target_path": str(pool_dir)},
        actor=Actor(admin_user),
    )
    services.delete_pool(pool, actor=Actor(admin_user))
    assert pool_dir.is_dir()
    assert not StoragePool.objects.filter(pk=pool.pk).exists()
    assert pool_dir.name not in virsh("pool-list", "--all", "--name").split()

    pool = services.create_pool(
        local_host,
        {"name": pool_dir.name, "type": "dir", "target_path": str(pool_dir)},
        actor=Actor(admin_user),
    )
    services.delete_pool(pool, actor=Actor(admin_user), delete_target=True)
    assert not pool_dir.exists()


def test_a_transient_pool_disappears_when_stopped(local_host, pool_dir, admin_user):
    pool = services.create_pool(
        local_host,
        {"name": pool_dir.name, "type": "dir", "target_path": str(pool_dir)},
        persistent=False,
        actor=Actor(admin_user),
    )
    assert (pool.state, pool.persistent) == ("active", False)
    assert services.pool_action(pool, "stop", actor=Actor(admin_user)) is None
    assert not StoragePool.objects.filter(pk=pool.pk).exists()
    assert pool_dir.name not in virsh("pool-list", "--all", "--name").split()
