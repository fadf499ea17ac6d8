"""Disks and CD-ROMs on VMs: attach, detach, insert and eject media, live and/or persistent.

Like `virsh attach-disk` (with --live / --config): the volume must be on the
VM's host and usable by the actor; a disk another VM uses is refused unless
it is marked shareable (CD-ROM images are read-only and may be shared).
"""

from __future__ import annotations

from panel import hypervisor
from panel.actors import Actor
from panel.exceptions import ConflictError, ServiceError
from panel.hypervisor import storage as hv
from panel.permissions import CONFIG_DISKS, VIEW, allowed, is_admin
from storage import services as storage_services
from storage.models import Volume
from storage.services import vms_using
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services.common import vm_change

BUSES = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd"}
CACHE_MODES = {
    "": "Hypervisor default.",
    "none": "No host page cache: writes go straight to the disk (best for most guests).",
    "writethrough": "Through the host cache, reported done only once on disk.",
    "writeback": "Reported done once in the host cache: fast, at risk on host power loss.",
    "directsync": "Like writethrough, but bypassing the host cache.",
    "unsafe": "The host caches everything and ignores flushes: only for throwaway guests.",
}
IO_MODES = {
    "": "Default",
    "native": "Linux native AIO",
    "threads": "Thread pool",
    "io_uring": "io_uring",
}
DISCARD_MODES = {
    "": "Default (ignore)",
    "unmap": "Pass TRIM/discard to the image",
    "ignore": "Ignore",
}
DEVICES = ("disk", "cdrom")


def next_target(vm: VirtualMachine, bus: str) -> str:
    """The first free device name for bus: vdb after vda, sdb after sda..."""
    prefix = BUSES[bus]
    used = {d.get("target") for d in vm.disks}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if f"{prefix}{letter}" not in used:
            return f"{prefix}{letter}"
    raise ServiceError(f"{vm.name} has no free {bus} device names left.", field="target")


def check_scope(vm: VirtualMachine, live: bool, persistent: bool) -> None:
    """A refusal unless the live and persistent scope asked for fits vm's state."""
    if not live and not persistent:
        raise ServiceError("Choose live, persistent or both.", field="live")
    if live and vm.state not in (VMState.RUNNING, VMState.PAUSED):
        raise ConflictError(f"{vm.name} is not running: a live change needs a running guest.")
    if persistent and not vm.persistent:
        raise ConflictError(f"{vm.name} is transient: only live changes apply to it.")


def _usable_volume(vm: VirtualMachine, volume: Volume, actor: Actor, *, read_only: bool) -> None:
    """The actor may put this volume into this VM."""
    if volume.pool.host_id != vm.host_id:
        raise ServiceError(
            f"{volume.name} is on {volume.pool.host.name}, {vm.name} on {vm.host.name}: "
            "a disk must be on the VM's host.",
            field="volume",
        )
    if is_admin(actor.user):
        return
    if volume.shared and read_only and allowed(actor.user, volume, VIEW):
        return
    if volume.project_id != vm.project_id or not allowed(actor.user, volume, CONFIG_DISKS):
        raise ServiceError(
            f"{volume.name} is not a volume of {vm.project or 'its project'} that you may use.",
            field="volume",
        )


def attach_disk(
    vm: VirtualMachine,
    *,
    volume: Volume | None,
    device: str = "disk",
    bus: str = "virtio",
    target: str = "",
    cache: str = "",
    io: str = "",
    discard: str = "",
    readonly: bool = False,
    shareable: bool = False,
    live: bool = True,
    persistent: bool = True,
    actor: Actor,
) -> VirtualMachine:
    """Attach a volume as a disk, or a CD-ROM drive (with an image, or empty)."""
    with vm_change(
        vm, actor, "vm.disk.attach", "change the disks of", right=CONFIG_DISKS
    ) as change:
        _check_modes(device, bus, cache, io, discard)
        if volume is None and device == "disk":
            raise ServiceError("Choose the volume to attach.", field="volume")
        check_scope(vm, live, persistent)
        read_only = readonly or device == "cdrom"
        path = fmt = ""
        chain: list[dict[str, str]] = []
        if volume is not None:
            path, fmt, chain = _attachable(vm, volume, actor, device, read_only, shareable)
        target = _free_target(vm, bus, target)
        spec = hypervisor.DiskSpec(
            path=path,
            target=target,
            format=fmt or "raw",
            bus=bus,
            device=device,
            readonly=read_only,
            cache=cache,
            io=io,
            discard=discard,
            shareable=shareable,
            backing=storage_services.as_backing(chain),
        )
        with change.claim(f"attaching {target}"):
            with change.on_host(f"Attaching {target} to {vm.name}"):
                info = hv.attach_disk(
                    vm.host.uri, str(vm.pk), spec, live=live, persistent=persistent
                )
            vm = change.done(
                info,
                f"{device} {target} ({bus}) {path or 'empty'}; {scope_words(live, persistent)}",
            )
    return vm


def _check_modes(device: str, bus: str, cache: str, io: str, discard: str) -> None:
    """The device, bus and cache, I/O and discard modes are known and fit together."""
    if device not in DEVICES:
        raise ServiceError(f"Device must be {' or '.join(DEVICES)}.", field="device")
    if bus not in BUSES:
        raise ServiceError(f"Unknown bus '{bus}': use {', '.join(BUSES)}.", field="bus")
    if device == "cdrom" and bus == "virtio":
        raise ServiceError("A CD-ROM drive needs a sata, scsi or usb bus.", field="bus")
    for value, table, field in (
        (cache, CACHE_MODES, "cache"),
        (io, IO_MODES, "io"),
        (discard, DISCARD_MODES, "discard"),
    ):
        if value not in table:
            raise ServiceError(
                f"Unknown {field} mode '{value}': use {', '.join(k for k in table if k)}.",
                field=field,
            )
    if io == "native" and cache not in ("none", "directsync"):
        raise ServiceError("io=native needs cache none or directsync.", field="io")


def _attachable(
    vm: VirtualMachine,
    volume: Volume,
    actor: Actor,
    device: str,
    read_only: bool,
    shareable: bool,
) -> tuple[str, str, list[dict[str, str]]]:
    """The volume's path, the format it is attached as and its backing chain, once the actor
    may put it into vm and no other VM holds it (unless shared or read only)."""
    _usable_volume(vm, volume, actor, read_only=read_only)
    path, fmt = volume.path, volume.format or "raw"
    chain: list[dict[str, str]] = []
    if device == "cdrom":
        fmt = "raw"  # read as bytes: nothing in it is followed
    else:
        # Attached as its recorded format and chain, once its header is checked.
        chain = storage_services.check_content(volume, "attached")
    if shareable and fmt != "raw":
        raise ServiceError(
            f"{volume.name} is {fmt}: only raw volumes can be shared between VMs.",
            field="shareable",
        )
    others = {n: p for n, p in vms_using(vm.host, [path]).items() if n != vm.name}
    if others and not (shareable or read_only):
        raise ConflictError(
            f"{volume.name} is already a disk of {', '.join(sorted(others))}: "
            "mark it shareable (and use a cluster filesystem) to share it."
        )
    if any(d.get("source") == path for d in vm.disks):
        raise ConflictError(f"{volume.name} is already attached to {vm.name}.")
    return path, fmt, chain


def _free_target(vm: VirtualMachine, bus: str, target: str) -> str:
    """The device name asked for, if it fits bus and is free; else the next free one."""
    if not target:
        return next_target(vm, bus)
    if not target.startswith(BUSES[bus]) or not target[2:].isalpha() or len(target) > 4:
        raise ServiceError(
            f"Target {target} does not fit bus {bus} ({BUSES[bus]}a, {BUSES[bus]}b...).",
            field="target",
        )
    if any(d.get("target") == target for d in vm.disks):
        raise ConflictError(f"{vm.name} already has a disk {target}.")
    return target


def scope_words(live: bool, persistent: bool) -> str:
    """'live', 'persistent' or 'live and persistent', for audit details."""
    return " and ".join(w for w, on in (("live", live), ("persistent", persistent)) if on)


def detach_disk(
    vm: VirtualMachine,
    target: str,
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Actor,
) -> VirtualMachine:
    """Detach the disk the guest sees as target; the volume itself stays."""
    with vm_change(
        vm, actor, "vm.disk.detach", "change the disks of", right=CONFIG_DISKS
    ) as change:
        if not any(d.get("target") == target for d in vm.disks):
            raise ServiceError(f"{vm.name} has no disk {target or '(none given)'}.", field="target")
        check_scope(vm, live, persistent)
        with change.claim(f"detaching {target}"):
            with change.on_host(f"Detaching {target} from {vm.name}"):
                info = hv.detach_disk(
                    vm.host.uri, str(vm.pk), target, live=live, persistent=persistent
                )
            vm = change.done(info, f"{target}; {scope_words(live, persistent)}")
    return vm


def change_media(
    vm: VirtualMachine,
    target: str,
    volume: Volume | None,
    *,
    live: bool = True,
    persistent: bool = False,
    actor: Actor,
) -> VirtualMachine:
    """Insert an image into a CD-ROM drive, or eject it (volume None)."""
    action = "vm.media.insert" if volume is not None else "vm.media.eject"
    with vm_change(vm, actor, action, "change the media of", right=CONFIG_DISKS) as change:
        drive = next((d for d in vm.disks if d.get("target") == target), None)
        if drive is None or drive.get("device") != "cdrom":
            raise ServiceError(
                f"{vm.name} has no CD-ROM drive {target or '(none given)'}.", field="target"
            )
        check_scope(vm, live, persistent)
        path = ""
        if volume is not None:
            _usable_volume(vm, volume, actor, read_only=True)
            path = volume.path
        with change.claim(f"changing the media in {target}"):
            with change.on_host(f"Changing the media in {target}"):
                info = hv.change_media(
                    vm.host.uri, str(vm.pk), target, path, live=live, persistent=persistent
                )
            vm = change.done(info, f"{target} {path or 'ejected'}")
    return vm
