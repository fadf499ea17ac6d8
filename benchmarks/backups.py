"""Incremental backups: a full backup of a running VM's 1 GiB disk, then an incremental one
after the guest wrote 10 MiB, through the panel's backup job.

The tiny guest runs with a 1 GiB qcow2 data disk filled with data (qemu-io, before it
boots), so the full copy has every cluster to copy. The full backup is the baseline; the
guest then writes 10 MiB at the middle of the disk (dd from /dev/urandom, then sync) and
the incremental backup copies what changed since the full one's checkpoint. Figures: the
time each copy took (the job's copy phase, as the Backups card shows it, and the whole job
with its qemu-img check), the bytes each copy holds, and the incremental point restored
into a new volume and compared with the disk (the work was done: the chain reads back as
the disk). Goals: the incremental copies about 10 MiB (at most 12 MiB) and takes under
10 % of the full backup's time.

Run: .venv/bin/python benchmarks/backups.py [--gib 1] [--mib 10]
Needs the local libvirtd and the tiny guest (scripts/install.sh --test builds it). The
pools live under /var/lib/libvirt/images and are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from common import isolated_django  # noqa: E402

WORK = isolated_django("panel-bench-backups-")

from benchkit import Report  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from panel import hypervisor  # noqa: E402
from panel.actors import Actor  # noqa: E402
from panel.hypervisor import storage as hv_storage  # noqa: E402
from panel.hypervisor.qemu_img import PinnedImage, block_spec  # noqa: E402
from panel.models import Host, Job  # noqa: E402
from storage import services as storage_services  # noqa: E402
from vms import services as vm_services  # noqa: E402
from vms.models import Backup  # noqa: E402
from vms.services import backups, chains  # noqa: E402
from vms.tasks import vm_backup_task  # noqa: E402

URI = "qemu:///system"
GUEST = "/var/lib/libvirt/boot/panel-test-guest"
MIB = 1024 * 1024
IMAGES = Path("/var/lib/libvirt/images")


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def make_pool(host: Host, admin, name: str):  # type: ignore[no-untyped-def]
    path = IMAGES / name
    return storage_services.create_pool(
        host, {"name": name, "type": "dir", "target_path": str(path)}, actor=Actor(admin)
    )


def guest_with_disk(host: Host, pool, admin, gib: int):  # type: ignore[no-untyped-def]
    """The tiny guest running with a gib GiB qcow2 data disk full of data."""
    volume = storage_services.create_volume(
        pool, name="data.qcow2", format="qcow2", capacity_gib=gib, actor=Actor(admin)
    )
    run("qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {gib}G", volume.path)
    spec = hypervisor.DomainSpec(
        name=f"panel-bench-backup-{os.getpid()}",
        domain_type="qemu",
        memory_mib=96,
        vcpus=1,
        kernel=f"{GUEST}/vmlinuz",
        initrd=f"{GUEST}/initrd.img",
        cmdline="console=ttyS0 quiet",
        vnc=False,
        disks=(hypervisor.DiskSpec(path=volume.path, format="qcow2"),),
    )
    info = hypervisor.define_domain(URI, spec)
    info = hypervisor.start_domain(URI, info.uuid)
    return vm_services.sync_domain(host, info)


def guest_writes(uuid: str, mib: int) -> None:
    """The guest writes mib MiB of random data at the middle of its disk and syncs."""
    console = hypervisor.open_console(URI, uuid)
    try:
        console.read_until(b"guest# ", 60)
        mark = len(console.output())
        console.send(
            f"dd if=/dev/urandom of=/dev/vda bs=1M seek=300 count={mib} 2>/dev/null; "
            "sync; echo w''rote\n".encode()
        )
        console.read_until(b"wrote\r\n", 120, start=mark)
    finally:
        console.close()


def backup(vm, pool, admin) -> tuple[Backup, float]:  # type: ignore[no-untyped-def]
    """A backup through the panel's job, run in this process; it and the job's seconds."""
    job = backups.take_backup(vm, pool, actor=Actor(admin))
    started = time.perf_counter()
    vm_backup_task(job.pk)
    elapsed = time.perf_counter() - started
    job = Job.objects.get(pk=job.pk)
    if job.state != "succeeded":
        raise SystemExit(f"backup job failed: {job.message}\n{job.log}")
    return Backup.objects.get(job=job), elapsed


def restored_matches(point: Backup, disk: str, scratch: Path) -> bool:
    """The point's chain flattened into a raw file equals the disk as it is now (the guest
    wrote nothing since)."""
    image = chains.images(point)["vda"]
    out = scratch / "restored.raw"
    run("qemu-img", "convert", "-O", "raw", block_spec(image), str(out))
    now = block_spec(PinnedImage(disk, "qcow2"))
    same = subprocess.run(
        ["qemu-img", "compare", "-U", "-f", "raw", str(out), now], capture_output=True
    )
    out.unlink()
    return same.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=int, default=1, help="disk size in GiB (1)")
    parser.add_argument("--mib", type=int, default=10, help="MiB the guest writes (10)")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_superuser("bench", "", "bench-pass-1")
    host = Host.objects.create(name="local", uri=URI, state="up")
    tag = f"panel-bench-bk-{os.getpid()}"
    pools, vm = [], None
    try:
        disks = make_pool(host, admin, f"{tag}-disks")
        target = make_pool(host, admin, f"{tag}-copies")
        pools = [disks, target]
        vm = guest_with_disk(host, disks, admin, args.gib)
        print(f"guest {vm.name} runs with a {args.gib} GiB disk full of data")
        full, full_job = backup(vm, target, admin)
        print(f"full backup #{full.pk}: {full.size / MIB:.1f} MiB in {full.duration:.2f} s")
        guest_writes(str(vm.pk), args.mib)
        inc, inc_job = backup(vm, target, admin)
        print(
            f"{inc.kind} backup #{inc.pk} on #{inc.parent_id}: {inc.size / MIB:.1f} MiB in "
            f"{inc.duration:.2f} s"
        )
        hypervisor.destroy_domain(URI, str(vm.pk))  # nothing writes while comparing
        same = restored_matches(inc, vm.disks[0]["source"], WORK)
        report(args, full, full_job, inc, inc_job, same)
    finally:
        cleanup(vm, pools)


def report(args, full: Backup, full_job: float, inc: Backup, inc_job: float, same: bool) -> None:  # type: ignore[no-untyped-def]
    ratio = (inc.duration or 0) / (full.duration or 1)
    rep = Report()
    rep.add("full backup: copy time (baseline)", f"{full.duration:.2f} s")
    rep.add("full backup: bytes copied", f"{full.size / MIB:.1f} MiB")
    rep.add("full backup: whole job", f"{full_job:.2f} s")
    rep.add(
        "incremental: bytes copied",
        f"{inc.size / MIB:.1f} MiB",
        f"about {args.mib} MiB (<= {args.mib * 1.2:.0f})",
        inc.kind == "incremental" and inc.size <= args.mib * 1.2 * MIB,
    )
    rep.add("incremental: copy time", f"{inc.duration:.2f} s")
    rep.add("incremental / full copy time", f"{100 * ratio:.1f} %", "< 10 %", ratio < 0.10)
    rep.add("incremental: whole job", f"{inc_job:.2f} s")
    rep.add("incremental point restores as the disk", str(same), "True", same)
    print()
    print(rep.table())


def cleanup(vm, pools) -> None:  # type: ignore[no-untyped-def]
    if vm is not None:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(URI, str(vm.pk))
    for pool in pools:
        with contextlib.suppress(hypervisor.HypervisorError):
            hv_storage.delete_pool(URI, pool.name, delete_target=True)
        shutil.rmtree(IMAGES / pool.name, ignore_errors=True)
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
