"""The Disks card's forms: attach a volume, detach a disk, change a CD-ROM's media."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import CONFIG_DISKS, restrict
from storage.models import Volume

from .choices import VMState
from .models import VirtualMachine
from .page_forms import vm_form
from .services import disks


def _volume(request: HttpRequest) -> Volume | None:
    """The volume the form names (None when it names none), if the user may see it."""
    pk = request.POST.get("volume", "")
    if not pk:
        return None
    volume = restrict(Volume.objects.select_related("pool"), request.user).filter(pk=pk).first()
    if volume is None:
        raise ServiceError("That volume does not exist or is not yours to use.")
    return volume


def _running(vm: VirtualMachine) -> bool:
    return vm.state in (VMState.RUNNING, VMState.PAUSED)


@vm_form(CONFIG_DISKS)
def vm_disk_attach(request: HttpRequest, vm: VirtualMachine) -> None:
    """Attach a volume as a disk or CD-ROM, with its bus, cache and I/O modes."""
    data = request.POST
    disks.attach_disk(
        vm,
        volume=_volume(request),
        device=data.get("device", "disk"),
        bus=data.get("bus", "virtio"),
        cache=data.get("cache", ""),
        io=data.get("io", ""),
        discard=data.get("discard", ""),
        readonly=data.get("readonly") == "1",
        shareable=data.get("shareable") == "1",
        live=data.get("live") == "1",
        persistent=data.get("persistent") == "1",
        actor=Actor.of(request),
    )
    messages.success(request, f"{vm.name}: disk attach done.")


@vm_form(CONFIG_DISKS)
def vm_disk_detach(request: HttpRequest, vm: VirtualMachine) -> None:
    """Detach a disk (live when the VM runs, and from its definition)."""
    disks.detach_disk(
        vm,
        request.POST.get("target", ""),
        live=_running(vm),
        persistent=vm.persistent,
        actor=Actor.of(request),
    )
    messages.success(request, f"{vm.name}: disk detach done.")


@vm_form(CONFIG_DISKS)
def vm_disk_media(request: HttpRequest, vm: VirtualMachine) -> None:
    """Insert an image into a CD-ROM drive, or eject it (no volume named)."""
    running = _running(vm)
    disks.change_media(
        vm,
        request.POST.get("target", ""),
        _volume(request),
        live=running,
        persistent=vm.persistent and not running,
        actor=Actor.of(request),
    )
    messages.success(request, f"{vm.name}: disk media done.")
