"""Checking a create request against what the actor may use: the host, the volumes, pools,
boot files and networks of a VM of the project, its disks and its install method; and what
a template's easy form stands for and allows.

The request's shape was checked when it was parsed (`spec`). Each check here raises a
ServiceError naming the field at fault, or a ConflictError when the request is sound but
the host's state is not.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from panel.actors import Actor
from panel.exceptions import ConflictError
from panel.models import Host, Project
from panel.permissions import CONFIG_DISKS, USE_NETWORK, VIEW, allowed, is_admin, restrict
from storage import services as storage_services
from storage.models import LibraryImage, StoragePool, Volume
from vms.models import Template
from vms.services.create.spec import (
    CloudImageInstall,
    CreateRequest,
    DiskRequest,
    EasyForm,
    ExistingDisk,
    ImportInstall,
    InstallRequest,
    IsoInstall,
    KernelInstall,
    NewDisk,
    PxeInstall,
    UrlInstall,
    field_error,
    parse_firmware,
)
from vms.services.create.vmspec import (
    CloudImageSpec,
    DiskSpec,
    ImportSpec,
    InstallSecrets,
    InstallSpec,
    IsoSpec,
    KernelSpec,
    UrlSpec,
)


def _may_use(actor: Actor, volume: Volume, project: Project, *, read_only: bool) -> bool:
    """Whether a VM of project made by actor may use volume: admins any; others a volume of
    that project they may change, or (read only: boot media, cloud images) one an admin
    published as shared. Anything else would let the guest read another's disk."""
    return (
        is_admin(actor.user)
        or (volume.shared and read_only)
        or (volume.project_id == project.pk and allowed(actor.user, volume, CONFIG_DISKS))
    )


def _volume(
    actor: Actor, host: Host, project: Project, pk: int | None, field: str, *, read_only: bool
) -> Volume:
    """A volume the actor may use for a VM of project on host."""
    volume = (
        restrict(Volume.objects.select_related("pool"), actor.user, VIEW).filter(pk=pk).first()
        if pk is not None
        else None
    )
    if volume is None:
        raise field_error(f"No volume with id {pk} that you can use.", field)
    if volume.pool.host_id != host.pk:
        raise field_error(f"{volume.name} is on {volume.pool.host.name}, not {host.name}.", field)
    if not _may_use(actor, volume, project, read_only=read_only):
        raise field_error(
            f"{volume.name} is not a volume of {project.name} that you may use.", field
        )
    users = storage_services.vms_using(host, [volume.path])
    if users and not read_only:
        raise ConflictError(f"{volume.name} is already a disk of {', '.join(sorted(users))}.")
    return volume


def _pool(
    actor: Actor, host: Host, pk: int | None, field: str, allowed_pools: list[int] | None
) -> StoragePool:
    pools = restrict(StoragePool.objects.filter(host=host), actor.user, VIEW)
    if allowed_pools is not None:
        pools = pools.filter(pk__in=allowed_pools)
    pool = pools.filter(pk=pk).first() if pk is not None else None
    if pool is None:
        raise field_error(f"No pool with id {pk} on {host.name} that you can use.", field)
    if pool.state != "active":
        raise ConflictError(f"Pool {pool.name} is not running: an admin must start it first.")
    return pool


def _boot_file(actor: Actor, host: Host, project: Project, path: str, field: str) -> str:
    """A kernel or initrd path (clean and absolute). Admins: a volume of a pool on host, or
    a file under an allowed root. Others: the path of a volume the VM may use (see
    _may_use), that is one of the project's they may change or a shared boot file an admin
    published."""
    if not is_admin(actor.user):
        # Looked up among the volumes the actor sees, so the answer tells nothing about
        # the others.
        volume = (
            restrict(Volume.objects.filter(pool__host=host, path=path), actor.user, VIEW)
            .select_related("pool")
            .first()
        )
        if volume is None or not _may_use(actor, volume, project, read_only=True):
            raise field_error(
                f"{path} is not a boot file you may use: name a volume of {project.name} that "
                "you may change, or a shared boot file an admin published (only admins name "
                "other files on the host).",
                field,
            )
        return path
    if Volume.objects.filter(pool__host=host, path=path).exists():
        return path
    roots = [os.path.normpath(r) for r in settings.PANEL_STORAGE_ROOTS]
    if not any(path.startswith(r + "/") for r in roots):
        raise field_error(
            f"{path} is neither a volume of a pool on {host.name} nor under the directories "
            f"allowed for boot files ({', '.join(roots)}).",
            field,
        )
    return path


@dataclass(frozen=True)
class InstallPlace:
    """Who installs a VM named name of which project on which host, with which networks."""

    actor: Actor
    host: Host
    project: Project
    networks: list[dict[str, Any]]
    name: str


def check_install(install: InstallRequest, at: InstallPlace) -> tuple[InstallSpec, InstallSecrets]:
    """The request's install, checked: what its method needs, and its secrets apart."""
    match install:
        case IsoInstall():
            return _iso_install(install, at), {}
        case UrlInstall():
            return _url_install(install)
        case KernelInstall():
            return _kernel_install(install, at), {}
        case PxeInstall():
            if not at.networks:
                raise field_error(
                    "A network install (PXE) needs a network to boot from.", "networks"
                )
            return {"method": "pxe"}, {}
        case ImportInstall():
            return _import_install(install, at), {}
        case CloudImageInstall():
            return _cloud_image_install(install, at)


def _library_volume(at: InstallPlace, pk: int, kind: str) -> Volume:
    """The volume of a library image the project may use, on the VM's host."""
    image = storage_services.usable_image(at.actor.user, at.project, pk, kind)
    volume = image.volume
    assert volume is not None  # usable_image refuses an image without one
    if volume.pool.host_id != at.host.pk:
        raise field_error(
            f"{image.name} is on {volume.pool.host.name}, not {at.host.name}: create the VM "
            "there, or pick an image of this host.",
            "library_image",
        )
    return volume


def _iso_install(install: IsoInstall, at: InstallPlace) -> IsoSpec:
    if install.library_image is not None:
        iso = _library_volume(at, install.library_image, "iso")
    else:
        iso = _volume(
            at.actor, at.host, at.project, install.iso_volume, "iso_volume", read_only=True
        )
    # Only once the actor may use it: the refusal names the volume.
    storage_services.require_cd_image(iso, "iso_volume")
    return {"method": "iso", "iso_path": iso.path}


def _kernel_install(install: KernelInstall, at: InstallPlace) -> KernelSpec:
    kernel = _boot_file(at.actor, at.host, at.project, install.kernel, "kernel")
    initrd = (
        _boot_file(at.actor, at.host, at.project, install.initrd, "initrd")
        if install.initrd
        else ""
    )
    return {"method": "kernel", "kernel": kernel, "initrd": initrd, "cmdline": install.cmdline}


def _url_install(install: UrlInstall) -> tuple[UrlSpec, InstallSecrets]:
    from vms.install import kickstart, tree

    tree.checked_url(install.location)
    if install.kickstart.strip():
        kickstart.validate_kickstart(install.kickstart)
    # Its name resolved and every address checked now, and again, hop by hop, when
    # the job fetches from it (a name can answer differently by then).
    tree.target(install.location)
    spec: UrlSpec = {
        "method": "url",
        "location": install.location,
        "extra_args": install.extra_args,
    }
    return spec, {"kickstart": install.kickstart}


def _import_install(install: ImportInstall, at: InstallPlace) -> ImportSpec:
    volume = _volume(at.actor, at.host, at.project, install.volume, "volume", read_only=False)
    # Booted as its recorded format, with its recorded chain, once its header is checked.
    chain = storage_services.check_content(volume, "the boot disk of a VM")
    return {
        "method": "import",
        "volume_chain": chain,
        "volume_path": volume.path,
        "volume_format": volume.format or "raw",
    }


def _cloud_image_install(
    install: CloudImageInstall, at: InstallPlace
) -> tuple[CloudImageSpec, InstallSecrets]:
    from vms.install import cloudinit

    if install.library_image is not None:
        image = _library_volume(at, install.library_image, "cloud")
    else:
        image = _volume(
            at.actor, at.host, at.project, install.image_volume, "image_volume", read_only=True
        )
    if image.format not in ("qcow2", "raw"):
        raise field_error(
            f"{image.name} is {image.format}: a cloud image is qcow2 or raw.", "image_volume"
        )
    image_chain = storage_services.check_content(image, "the base of a VM's disk")
    config = install.cloud_init
    user_data = _user_data(install, at.name)
    cloudinit.validate_user_data(user_data)
    if config.meta_data.strip():
        cloudinit.validate_yaml(config.meta_data, "meta_data", "meta-data")
    if config.network_config.strip():
        cloudinit.validate_yaml(config.network_config, "network_config", "network-config")
    spec: CloudImageSpec = {
        "method": "cloud-image",
        "image_path": image.path,
        "image_format": image.format,
        "image_chain": image_chain,
        "image_capacity": image.capacity,
        "image_pool": image.pool.name,
        "linked": install.linked,
    }
    secrets: InstallSecrets = {
        "user_data": user_data,
        "meta_data": config.meta_data,
        "network_config": config.network_config,
    }
    return spec, secrets


def _user_data(install: CloudImageInstall, name: str) -> str:
    """The cloud-init user-data: made from a user, password and keys, or given as is."""
    from vms.install import cloudinit

    config = install.cloud_init
    if not config.user:
        return config.user_data
    wanted = install.hostname if install.hostname is not None else name
    hostname = re.sub(r"[^A-Za-z0-9-]", "-", wanted).strip("-")
    return cloudinit.simple_user_data(
        user=config.user,
        password=config.password,
        ssh_keys=list(config.ssh_keys),
        hostname=hostname[:63] or "vm",
    )


def check_disks(
    disks: tuple[DiskRequest, ...],
    *,
    actor: Actor,
    host: Host,
    project: Project,
    name: str,
    allowed_pools: list[int] | None,
) -> list[DiskSpec]:
    """The request's disks: volumes the VM may use, or new ones in pools it may use."""
    out: list[DiskSpec] = []
    for i, disk in enumerate(disks):
        if isinstance(disk, ExistingDisk):
            volume = _volume(actor, host, project, disk.volume, "disks", read_only=False)
            chain = storage_services.check_content(volume, "a disk of a VM")
            out.append(
                {
                    "path": volume.path,
                    "format": volume.format or "raw",
                    "backing": chain,
                    "existing": True,
                }
            )
            continue
        pool = _pool(actor, host, disk.pool, "disks", allowed_pools)
        capacity = storage_services.capacity_bytes(disk.size_gib, "disks")
        vol_name = f"{name}-disk{i}.{'qcow2' if disk.format == 'qcow2' else 'img'}"
        if Volume.objects.filter(pool=pool, name=vol_name).exists():
            raise ConflictError(f"Pool {pool.name} already has a volume {vol_name}.")
        out.append(
            {
                "pool": pool.name,
                "pool_id": pool.pk,
                "name": vol_name,
                "capacity": capacity,
                "format": disk.format,
                "preallocation": disk.preallocation,
                "existing": False,
            }
        )
    return out


def check_networks(
    actor: Actor,
    host: Host,
    project: Project,
    ids: tuple[int | None, ...],
    template: Template | None,
) -> list[dict[str, Any]]:
    """The networks of host the VM joins, each allowed to project (and offered by template)."""
    from networking.models import Network
    from networking.services import traffic_filter

    visible = restrict(Network.objects.filter(host=host), actor.user, USE_NETWORK)
    allowed_networks = project.allowed_networks.all()
    out = []
    for pk in ids:
        network = visible.filter(pk=pk).first() if pk is not None else None
        if network is None:
            raise field_error(
                f"No network with id {pk} on {host.name} that you can use.", "networks"
            )
        if allowed_networks.exists() and not allowed_networks.filter(pk=network.pk).exists():
            raise field_error(f"{project.name} may not use network {network.name}.", "networks")
        if (
            template is not None
            and template.networks.exists()
            and not template.networks.filter(pk=network.pk).exists()
        ):
            raise field_error(
                f"Template {template.name} does not offer network {network.name}.", "networks"
            )
        # The new VM's owner is the actor: a member's NICs get the anti-spoofing filter.
        out.append({"network": network.name, **traffic_filter(network, actor)})
    return out


def from_template(template: Template, request: CreateRequest) -> CreateRequest:
    """The full request a template's easy form stands for: what the form left blank and
    everything else from the template."""
    easy = request.easy or EasyForm()
    pool = easy.pool
    if pool is None:
        pool = template.pools.values_list("pk", flat=True).first()
    host = request.host
    if host is None and template.image is not None:
        host = template.image.pool.host_id
    return dataclasses.replace(
        request,
        host=host,
        vcpus=template.vcpus if request.vcpus is None else request.vcpus,
        memory_mib=template.memory_mib if request.memory_mib is None else request.memory_mib,
        firmware=parse_firmware(template.firmware),
        os_variant=template.os_variant,
        disks=(NewDisk(pool, easy.disk_gib(template.disk_gib)),) if pool is not None else (),
        networks=request.networks or tuple(template.networks.values_list("pk", flat=True)[:1]),
        install=_template_install(template, easy),
        start=True,
    )


def _template_install(template: Template, easy: EasyForm) -> InstallRequest:
    # A template made on a library image offers it as the library does: to the projects
    # the image is published to.
    library_image = (
        LibraryImage.objects.filter(volume=template.image).values_list("pk", flat=True).first()
        if template.image is not None
        else None
    )
    if template.source == "cloud-image":
        return CloudImageInstall(
            template.image_id, cloud_init=easy.login, library_image=library_image
        )
    if template.source == "iso":
        return IsoInstall(template.image_id, library_image=library_image)
    return UrlInstall(location=(template.location or "").strip(), kickstart=template.kickstart)


def within_template(template: Template, vcpus: int, memory_mib: int, easy: EasyForm | None) -> None:
    """A refusal when the VM asks for more than template allows."""
    if vcpus > template.max_vcpus:
        raise field_error(
            f"Template {template.name} allows at most {template.max_vcpus} vCPUs.", "vcpus"
        )
    if memory_mib > template.max_memory_mib:
        raise field_error(
            f"Template {template.name} allows at most {template.max_memory_mib} MiB.", "memory_mib"
        )
    size = (easy or EasyForm()).disk_gib(template.disk_gib) or 0.0
    if size > template.max_disk_gib:
        raise field_error(
            f"Template {template.name} allows disks of at most {template.max_disk_gib} GiB.",
            "size_gib",
        )
