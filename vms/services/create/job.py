"""Creating a VM, the job: allocate the disks, build the install media (cloud-init seed,
kickstart-injected initrd), define and start the domain and wait for its first console
output. Every volume and domain it makes is written into the job as it goes; any failure,
or a worker that died mid-way (see `undo_abandoned()`), undoes them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any

from django.db import transaction

from panel import hypervisor, jobs
from panel.exceptions import ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import storage as hv_storage
from panel.hypervisor.qemu_img import PinnedImage
from panel.models import Host, Job, Project
from storage import services as storage_services
from storage.models import FormatSource, StoragePool, Volume
from vms.models import AffinityGroup, Template, VirtualMachine
from vms.services.create.vmspec import CloudImageSpec, MadeVolume, NewDiskSpec, UrlSpec, VMSpec
from vms.services.sync import sync_domain

CONSOLE_WAIT_SECONDS = 60
# How long the cleanup after a dead worker waits for libvirt to finish writing a volume.
ABANDONED_WAIT_SECONDS = 600
MAX_BOOT_FILE_BYTES = 512 * 1024 * 1024


def _remember(job: Job, **made: Any) -> None:
    """Write what the job made so far, so a later cleanup finds it even after a crash."""
    job.result["made"].update(made)
    Job.objects.filter(pk=job.pk).update(result=job.result)


def _step(job: Job, progress: int, message: str) -> None:
    jobs.report(job.pk, progress=progress, message=message, log_line=message)


def run_create_job(job: Job) -> None:
    """Allocate, build media, define, start and wait; on any failure undo everything."""
    spec: VMSpec = job.result
    host = Host.objects.get(pk=spec["host"])
    try:
        with on_host(host, f"Creating {spec['vm_name']}"):
            _build(job, host, spec)
    except BaseException as exc:
        jobs.report(job.pk, log_line=f"failed: {exc}; removing what this job made")
        undo(job)
        raise


def _upload(host: Host, pool: str, name: str, data: bytes) -> str:
    """A new raw volume in pool holding data; returns its path."""
    info = hv_storage.create_volume(
        host.uri, pool, hypervisor.VolumeSpec(name=name, capacity=len(data), format="raw")
    )
    chunks = (data[i : i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024))
    hv_storage.upload_volume(host.uri, pool, name, chunks, len(data))
    return info.path


def _secrets(job: Job, needed: tuple[str, ...]) -> dict[str, str]:
    """The install's secrets, as create_vm() handed them to the job."""
    secrets = jobs.secrets_of(job.pk)
    if any(key not in secrets for key in needed):
        raise ServiceError(
            "This job's install data (user-data or kickstart) is no longer there: "
            "create the VM again."
        )
    return secrets


def _build(job: Job, host: Host, spec: VMSpec) -> None:
    name = spec["vm_name"]
    disks = _disks(job, host, spec)
    media = _install_media(job, host, spec, disks)
    _step(job, 60, f"defining {name}")
    info = _define(host, spec, disks, media)
    _remember(job, domain=True)
    if spec["start"]:
        info = _wait_for_boot(job, host, spec)
    _finish(job, host, spec, info)
    jobs.report(
        job.pk,
        progress=100,
        message=f"{name} is {info.state}.",
        log_line=f"{name} created ({info.state})",
    )


def _disks(job: Job, host: Host, spec: VMSpec) -> list[hypervisor.DiskSpec]:
    """The VM's disks: the existing ones named, the new ones allocated (an imported boot
    disk first); targets vda, vdb, ... in that order."""
    install = spec["install"]
    disks: list[hypervisor.DiskSpec] = []
    for i, disk in enumerate(spec["disks"]):
        target = f"vd{chr(ord('a') + i)}"
        if disk["existing"]:
            disks.append(
                hypervisor.DiskSpec(
                    path=disk["path"],
                    target=target,
                    format=disk["format"],
                    backing=storage_services.as_backing(disk.get("backing")),
                )
            )
            continue
        _step(
            job,
            5 + 30 * i // max(len(spec["disks"]), 1),
            f"allocating {disk['name']} in {disk['pool']}",
        )
        cloud = install if i == 0 and install["method"] == "cloud-image" else None
        disks.append(_new_disk(job, host, spec, disk, target, cloud=cloud))
    if install["method"] != "import":
        return disks
    imported = hypervisor.DiskSpec(
        path=install["volume_path"],
        target="vda",
        format=install["volume_format"],
        backing=storage_services.as_backing(install.get("volume_chain")),
    )
    return [
        dataclasses.replace(d, target=f"vd{chr(ord('a') + i)}")
        for i, d in enumerate([imported, *disks])
    ]


def _new_disk(
    job: Job,
    host: Host,
    spec: VMSpec,
    disk: NewDiskSpec,
    target: str,
    *,
    cloud: CloudImageSpec | None,
) -> hypervisor.DiskSpec:
    """A new volume for disk (the boot disk made from the cloud image of cloud, if given),
    recorded as made."""
    made = spec["made"]["volumes"]
    # Written down before libvirt makes it: a worker killed while libvirt writes the
    # volume leaves a job whose cleanup still finds it.
    chain = _overlay_chain(cloud) if cloud is not None and cloud["linked"] else []
    fmt = _made_format(disk, cloud is not None)
    entry: MadeVolume = {"pool": disk["pool"], "name": disk["name"], "format": fmt}
    if chain:
        entry["backing"] = chain
    made.append(entry)
    _remember(job)
    try:
        if cloud is not None:
            info = _cloud_disk(job, host, disk, cloud)
        else:
            info = hv_storage.create_volume(
                host.uri,
                disk["pool"],
                hypervisor.VolumeSpec(
                    name=disk["name"],
                    capacity=disk["capacity"],
                    format=disk["format"],
                    preallocation=disk["preallocation"],
                ),
            )
    except hypervisor.Conflict:
        # Not made by this job (the name was taken meanwhile): not ours to remove.
        made.pop()
        _remember(job)
        raise
    # The format the panel made it in and the chain it recorded: never libvirt's
    # guess from the new file's content.
    return hypervisor.DiskSpec(
        path=info.path, target=target, format=fmt, backing=storage_services.as_backing(chain)
    )


@dataclasses.dataclass(frozen=True)
class InstallMedia:
    """How the VM boots to install: the boot order, and a kernel, initrd and command line
    when it boots one directly."""

    boot: tuple[str, ...] = ("hd",)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


def _install_media(
    job: Job, host: Host, spec: VMSpec, disks: list[hypervisor.DiskSpec]
) -> InstallMedia:
    """What the install boots from; a CD-ROM it needs is appended to disks."""
    install = spec["install"]
    if install["method"] == "iso":
        disks.append(_cdrom(install["iso_path"]))
        return InstallMedia(boot=("cdrom", "hd"))
    if install["method"] == "pxe":
        return InstallMedia(boot=("network", "hd"))
    if install["method"] == "kernel":
        return InstallMedia(
            kernel=install["kernel"],
            initrd=install["initrd"] or None,
            cmdline=install["cmdline"] or None,
        )
    new_disks = [d for d in spec["disks"] if not d["existing"]]
    boot_pool = new_disks[0]["pool"] if new_disks else ""
    if install["method"] == "cloud-image":
        disks.append(_cdrom(_seed_iso(job, host, spec, boot_pool)))
    if install["method"] == "url":
        kernel, initrd, cmdline = _tree_boot_files(job, host, spec, install, boot_pool)
        return InstallMedia(kernel=kernel, initrd=initrd, cmdline=cmdline)
    return InstallMedia()


def _cdrom(path: str) -> hypervisor.DiskSpec:
    return hypervisor.DiskSpec(path=path, target="sda", format="raw", bus="sata", device="cdrom")


def _seed_iso(job: Job, host: Host, spec: VMSpec, pool: str) -> str:
    """The cloud-init seed (NoCloud) built from the job's secrets, put into pool; its path."""
    from vms.install import cloudinit

    name = spec["vm_name"]
    _step(job, 40, "building the cloud-init seed (NoCloud)")
    secrets = _secrets(job, ("user_data", "meta_data", "network_config"))
    meta = secrets["meta_data"] or cloudinit.default_meta_data(spec["vm"], name)
    iso = cloudinit.build_seed_iso(secrets["user_data"], meta, secrets["network_config"] or None)
    seed_name = f"{name}-cidata.iso"
    path = _upload(host, pool, seed_name, iso)
    spec["made"]["volumes"].append({"pool": pool, "name": seed_name})
    _remember(job)
    jobs.forget_secrets(job.pk)
    return path


def _define(
    host: Host, spec: VMSpec, disks: list[hypervisor.DiskSpec], media: InstallMedia
) -> hypervisor.DomainInfo:
    """Define the domain (and start it when asked)."""
    method = spec["install"]["method"]
    direct = method == "kernel"
    final = hypervisor.DomainSpec(
        name=spec["vm_name"],
        uuid=spec["vm"],
        vcpus=spec["vcpus"],
        memory_mib=spec["memory_mib"],
        domain_type=host.domain_type or "qemu",
        firmware=spec["firmware"],
        disks=tuple(disks),
        nics=tuple(hypervisor.NicSpec(**n) for n in spec["networks"]),
        boot=media.boot,
        kernel=media.kernel if direct else None,
        initrd=media.initrd if direct else None,
        cmdline=media.cmdline if direct else None,
        serial_console=True,
        vnc=True,
        # A qemu+tls host's displays listen where its qemu.conf says, for the panel to
        # reach them over TLS (panel.vnc_tls); the others' on its loopback.
        vnc_listen="" if hypervisor.is_tls(host.uri) else "127.0.0.1",
        description=f"os_variant={spec['os_variant']}" if spec["os_variant"] else "",
    )
    installer = None
    if method == "url":
        # The installer boots once from the tree's kernel; its reboot ends that boot and
        # the VM starts from its disk afterwards, as virt-install does.
        installer = dataclasses.replace(
            final,
            kernel=media.kernel,
            initrd=media.initrd,
            cmdline=media.cmdline,
            on_reboot="destroy",
        )
    return hypervisor.install_domain(host.uri, final, installer=installer, start=spec["start"])


def _wait_for_boot(job: Job, host: Host, spec: VMSpec) -> hypervisor.DomainInfo:
    """Wait for the started VM's first console output; the domain as it is then."""
    _step(job, 70, f"started; waiting for {spec['vm_name']}'s first console output")
    seen = first_output(host, spec["vm"], CONSOLE_WAIT_SECONDS)
    jobs.report(
        job.pk,
        progress=95,
        log_line=f"console: {seen[:120]!r}"
        if seen
        else f"no console output in {CONSOLE_WAIT_SECONDS} s (the OS may not use the serial console)",
    )
    return hypervisor.get_domain(host.uri, spec["vm"])


def _made_format(disk: NewDiskSpec, cloud: bool) -> str:
    """The format of a disk the job makes: a cloud image's boot disk is always qcow2."""
    return "qcow2" if cloud else disk["format"]


def _overlay_chain(install: CloudImageSpec) -> list[dict[str, str]]:
    """The chain below a cloud image's linked overlay: the image, then its own."""
    image = {"path": install["image_path"], "format": install["image_format"]}
    return [image, *install.get("image_chain", [])]


def _cloud_disk(
    job: Job, host: Host, disk: NewDiskSpec, install: CloudImageSpec
) -> hypervisor.VolumeInfo:
    """The boot disk of a cloud-image VM: a qcow2 overlay on the image, or a full copy; grown to size."""
    capacity = max(disk["capacity"], int(install["image_capacity"]))
    if install["linked"]:
        info = hv_storage.create_volume(
            host.uri,
            disk["pool"],
            hypervisor.VolumeSpec(
                name=disk["name"],
                capacity=capacity,
                format="qcow2",
                backing_path=install["image_path"],
                backing_format=install["image_format"],
            ),
        )
        jobs.report(job.pk, log_line=f"overlay {disk['name']} on {install['image_path']}")
        return info
    image_name = os.path.basename(install["image_path"])

    def progress(done: int, total: int) -> None:
        jobs.report(
            job.pk,
            progress=5 + int(30 * done / max(total, 1)),
            message=f"copying the image: {done} of {total} bytes",
        )

    info = hv_storage.copy_volume(
        host.uri,
        install["image_pool"],
        image_name,
        disk["name"],
        source=PinnedImage(
            install["image_path"],
            install["image_format"],
            storage_services.as_backing(install.get("image_chain")),
        ),
        format="qcow2",
        target_pool=disk["pool"],
        progress=progress,
    )
    if info.capacity < capacity:
        # The copy was written as qcow2 with no backing file: it is resized as that.
        info = hv_storage.resize_volume(
            host.uri,
            disk["pool"],
            disk["name"],
            capacity,
            shrink=False,
            source=PinnedImage(info.path, "qcow2"),
        )
    return info


def _tree_boot_files(
    job: Job, host: Host, spec: VMSpec, install: UrlSpec, pool: str
) -> tuple[str, str, str]:
    """Fetch the tree's kernel and initrd, inject the kickstart, put both into pool."""
    from vms.install import kickstart, tree

    name, made = spec["vm_name"], spec["made"]["volumes"]
    _step(job, 38, f"looking for the boot files in {install['location']}")
    kernel_url, initrd_url = tree.find_boot_files(install["location"])

    def progress(what: str, base: int) -> Any:
        def report(done: int, total: int | None) -> None:
            jobs.report(
                job.pk,
                progress=base,
                message=f"fetching the {what}: {done} bytes" + (f" of {total}" if total else ""),
            )

        return report

    kernel_bytes = tree.fetch(
        kernel_url, max_bytes=MAX_BOOT_FILE_BYTES, progress=progress("kernel", 42)
    )
    initrd_bytes = tree.fetch(
        initrd_url, max_bytes=MAX_BOOT_FILE_BYTES, progress=progress("initrd", 46)
    )
    args = [f"inst.repo={install['location']}"]
    text = _secrets(job, ("kickstart",))["kickstart"]
    if text.strip():
        initrd_bytes = kickstart.inject_into_initrd(initrd_bytes, {"ks.cfg": text.encode()})
        args.append(kickstart.kickstart_cmdline("ks.cfg"))
        jobs.report(job.pk, log_line="kickstart injected into the initrd as /ks.cfg")
    if install["extra_args"]:
        args.append(install["extra_args"])
    paths = []
    for suffix, data in (("vmlinuz", kernel_bytes), ("initrd.img", initrd_bytes)):
        vol = f"{name}-{suffix}"
        paths.append(_upload(host, pool, vol, data))
        made.append({"pool": pool, "name": vol})
        _remember(job)
    jobs.forget_secrets(job.pk)
    return paths[0], paths[1], " ".join(args)


def first_output(host: Host, uuid: str, timeout: float) -> str:
    """What the guest printed on its serial console first ('' if nothing within timeout)."""
    stream = hypervisor.open_console(host.uri, uuid)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = stream.output()
            if out.strip():
                time.sleep(0.5)  # let the first line finish
                return stream.output().decode(errors="replace")
            time.sleep(0.2)
        return ""
    finally:
        stream.close()


def _finish(job: Job, host: Host, spec: VMSpec, info: hypervisor.DomainInfo) -> None:
    """The VM and volume rows, owned by the project; the job's reservation handed over."""
    project = Project.objects.get(pk=spec["project"])
    owner_id = spec["owner"]
    with transaction.atomic():
        vm = sync_domain(host, info)
        vm.project = project
        vm.owner_id = owner_id
        vm.template = Template.objects.filter(pk=spec.get("template") or 0).first()
        vm.save(update_fields=["project", "owner", "template"])
        group = AffinityGroup.objects.filter(pk=spec.get("affinity_group") or 0).first()
        if group is not None:
            group.vms.add(vm)
        for made in spec["made"]["volumes"]:
            pool = StoragePool.objects.filter(host=host, name=made["pool"]).first()
            if pool is None:
                continue
            vol_info = hv_storage.get_volume(host.uri, made["pool"], made["name"])
            # Recorded as the job made it (boot files and seeds are raw), never as libvirt
            # reads the content: a fetched kernel may hold anything.
            fmt = made.get("format", "raw")
            Volume.objects.update_or_create(
                pool=pool,
                name=made["name"],
                defaults={
                    **storage_services.observed(vol_info, vm.synced, fmt),
                    "format": fmt,
                    "format_source": FormatSource.CREATED,
                    "backing": made.get("backing", []),
                    "project": project,
                    "owner_id": owner_id,
                },
            )
        job.result["reserve"] = {}
        Job.objects.filter(pk=job.pk).update(result=job.result)


def undo(job: Job, *, wait: float = 0.0) -> list[str]:
    """Remove what a create job made (domain, then volumes, then rows); return what went.

    wait: how long to wait for a volume libvirt is still writing (see delete_volume)."""
    spec: VMSpec = job.result
    host = Host.objects.filter(pk=spec.get("host")).first()
    removed: list[str] = []
    if host is None:
        return removed
    made = spec.get("made", {})
    # The domain's UUID was made for this job: whatever has it is this job's, even when
    # the worker died between defining it and writing that down.
    with contextlib.suppress(hypervisor.HypervisorError):
        hypervisor.undefine_domain(host.uri, spec["vm"])
        removed.append(f"domain {spec['vm_name']}")
    for vol in reversed(made.get("volumes", [])):
        with contextlib.suppress(hypervisor.NotFound):
            try:
                hv_storage.delete_volume(host.uri, vol["pool"], vol["name"], wait=wait)
                removed.append(f"volume {vol['pool']}/{vol['name']}")
            except hypervisor.HypervisorError as exc:
                jobs.report(job.pk, log_line=f"could not remove {vol['pool']}/{vol['name']}: {exc}")
        Volume.objects.filter(pool__host=host, pool__name=vol["pool"], name=vol["name"]).delete()
    VirtualMachine.objects.filter(pk=spec["vm"]).delete()
    job.result["reserve"] = {}
    Job.objects.filter(pk=job.pk).update(result=job.result)
    if removed:
        jobs.report(job.pk, log_line="removed " + ", ".join(removed))
    return removed


def undo_abandoned(job: Job) -> str:
    """A create whose worker died: remove what it made; what to tell the user."""
    undo(job, wait=ABANDONED_WAIT_SECONDS)
    return "everything it made was removed"
