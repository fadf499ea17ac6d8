"""Creating a VM: the panel's create job beside the same steps done by hand with libvirt.

The panel: `create_vm()` (checks, placement, quota) and the create job run inline
(a qcow2 data disk, define, start, wait for the first console output), as a
worker runs it. By hand: the same volume made with libvirt, the same domain
defined and started, the console read until the guest prints. Both boot the
tiny guest by direct kernel boot under TCG, N rounds each, alternating.
Goal: the panel's median within 1 s of the by-hand median.

Run: .venv/bin/python benchmarks/create.py [--rounds 5]
Needs the local libvirtd and the tiny guest (scripts/build-test-guest.sh).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
import uuid as uuidlib
from pathlib import Path

from common import isolated_django  # noqa: E402

WORK = isolated_django("panel-bench-create-")

from django.core.management import call_command  # noqa: E402

from panel import hypervisor  # noqa: E402
from panel import services as panel_services  # noqa: E402
from panel.actors import Actor  # noqa: E402
from panel.hypervisor import storage as hv_storage  # noqa: E402
from panel.models import Host, Job  # noqa: E402
from storage import services as storage_services  # noqa: E402
from vms.services import create  # noqa: E402
from vms.tasks import vm_create_task  # noqa: E402

URI = "qemu:///system"
GUEST = "/var/lib/libvirt/boot/panel-test-guest"
MIB = 1024 * 1024


def by_hand(pool: str, name: str) -> float:
    t0 = time.perf_counter()
    vol = hv_storage.create_volume(
        URI, pool, hypervisor.VolumeSpec(name=f"{name}-disk0.qcow2", capacity=64 * MIB)
    )
    spec = hypervisor.DomainSpec(
        name=name,
        uuid=str(uuidlib.uuid4()),
        memory_mib=96,
        kernel=f"{GUEST}/vmlinuz",
        initrd=f"{GUEST}/initrd.img",
        cmdline="console=ttyS0",
        disks=(hypervisor.DiskSpec(path=vol.path, target="vda"),),
    )
    info = hypervisor.install_domain(URI, spec)
    create.first_output(Host(uri=URI), info.uuid, 60)
    return time.perf_counter() - t0


def through_panel(admin, pool, project, name: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    job = create.create_vm(
        create.CreateRequest.parse(
            {
                "name": name,
                "project": project.pk,
                "memory_mib": 96,
                "disks": [{"pool": pool.pk, "size_gib": 64 / 1024}],
                "install": {
                    "method": "kernel",
                    "kernel": f"{GUEST}/vmlinuz",
                    "initrd": f"{GUEST}/initrd.img",
                    "cmdline": "console=ttyS0",
                },
            }
        ),
        actor=Actor(admin),
    )
    vm_create_task(job.pk)
    elapsed = time.perf_counter() - t0
    if Job.objects.get(pk=job.pk).state != "succeeded":
        raise RuntimeError(Job.objects.get(pk=job.pk).log)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("bench", "", "bench-pass-1")
    host = Host.objects.create(
        name="local",
        uri=URI,
        state="up",
        domain_type="qemu",
        facts={"cpus": 2, "memory_total_bytes": 8 << 30, "memory_free_bytes": 4 << 30},
    )
    project = panel_services.create_project(name="bench", actor=Actor(admin))
    pool_dir = Path("/var/lib/libvirt/images") / f"panel-bench-{os.getpid()}"
    pool = storage_services.create_pool(
        host,
        {"name": pool_dir.name, "type": "dir", "target_path": str(pool_dir)},
        actor=Actor(admin),
    )
    hand, panel = [], []
    try:
        for i in range(rounds):
            hand.append(by_hand(pool.name, f"paneltest-bench-hand{i}"))
            panel.append(through_panel(admin, pool, project, f"paneltest-bench-panel{i}"))
    finally:
        for info in hypervisor.list_domains(URI):
            if info.name.startswith("paneltest-bench-"):
                hypervisor.undefine_domain(URI, info.uuid)
        hv_storage.delete_pool(URI, pool.name)
        shutil.rmtree(pool_dir, ignore_errors=True)
        shutil.rmtree(WORK, ignore_errors=True)
    h, p = statistics.median(hand), statistics.median(panel)
    print(f"\nCreate to first console output, tiny guest under TCG, {rounds} rounds each\n")
    print(f"{'':<22}{'median s':>10}{'min s':>8}{'max s':>8}")
    print(f"{'by hand (libvirt)':<22}{h:>10.2f}{min(hand):>8.2f}{max(hand):>8.2f}")
    print(f"{'panel create job':<22}{p:>10.2f}{min(panel):>8.2f}{max(panel):>8.2f}")
    print(f"\noverhead {p - h:+.2f} s; goal <= +1.00 s: {'ok' if p - h <= 1.0 else 'MISS'}")


if __name__ == "__main__":
    main()
