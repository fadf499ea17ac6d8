"""Checking a create request: the ids, numbers and lists it names, the volumes, pools,
boot files and networks the actor may use for a VM of the project, its disks, its install
method, and what a template's easy form stands for and allows.

Each check raises a ServiceError naming the field at fault, or a ConflictError when the
request is sound but the host's state is not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from panel.actors import Actor
from panel.choices import HostState
from panel.exceptions import ConflictError, ServiceError
from panel.models import Host, Project
from panel.permissions import CHANGE, VIEW, allowed, is_admin, restrict
from storage import services as storage_services
from storage.models import StoragePool, Volume
from vms.models import Template

METHODS = ("iso", "url", "kernel", "pxe", "import", "cloud-image")


def field_error(message: str, field: str) -> ServiceError:
    """A refusal of the request that names the field at fault."""
    return ServiceError(message, field=field)


def object_id(value: Any, field: str) -> int | None:
    """An object id from the request: a whole number, or None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise field_error(f"{field} must be an id (a whole number).", field)
    try:
        return int(value)
    except ValueError:
        raise field_error(f"{field} must be an id (a whole number).", field) from None


def list_field(value: Any, field: str) -> list[Any]:
    """A list from the request, empty when not given."""
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise field_error(f"{field} must be a list.", field)
    return value


def int_between(value: Any, field: str, low: int, high: int, what: str) -> int:
    """A whole number from the request within low..high (what names it in the refusal)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise field_error(f"{what} must be a whole number.", field) from None
    if not low <= number <= high:
        raise field_error(f"{what} must be between {low} and {high}.", field)
    return number


def choose_host(actor: Actor, host_id: Any) -> Host:
    """The host asked for, or the visible host that is up with the most free memory."""
    hosts = restrict(Host.objects.all(), actor.user, VIEW)
    host_id = object_id(host_id, "host")
    if host_id is not None:
        host = hosts.filter(pk=host_id).first()
        if host is None:
            raise field_error(f"No host with id {host_id} that you can use.", "host")
        if host.state != HostState.UP:
            raise ConflictError(f"{host.name} is {host.state}: pick a host that is up.")
        return host
    up = [h for h in hosts.filter(state=HostState.UP)]
    if not up:
        raise ConflictError("No host you may use is up: the VM has nowhere to go.")
    return max(up, key=lambda h: int(h.facts.get("memory_free_bytes", 0)))


def _may_use(actor: Actor, volume: Volume, project: Project, *, read_only: bool) -> bool:
    """Whether a VM of project made by actor may use volume: admins any; others a volume of
    that project they may change, or (read only: boot media, cloud images) one an admin
    published as shared. Anything else would let the guest read another's disk."""
    return (
        is_admin(actor.user)
        or (volume.shared and read_only)
        or (volume.project_id == project.pk and allowed(actor.user, volume, CHANGE))
    )


def _volume(
    actor: Actor, host: Host, project: Project, pk: Any, field: str, *, read_only: bool
) -> Volume:
    """A volume the actor may use for a VM of project on host."""
    pk = object_id(pk, field)
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


def _pool(actor: Actor, host: Host, pk: Any, field: str, allowed_pools: Any = None) -> StoragePool:
    pools = restrict(StoragePool.objects.filter(host=host), actor.user, VIEW)
    if allowed_pools is not None:
        pools = pools.filter(pk__in=allowed_pools)
    pk = object_id(pk, field)
    pool = pools.filter(pk=pk).first() if pk is not None else None
    if pool is None:
        raise field_error(f"No pool with id {pk} on {host.name} that you can use.", field)
    if pool.state != "active":
        raise ConflictError(f"Pool {pool.name} is not running: an admin must start it first.")
    return pool


def _boot_file(actor: Actor, host: Host, project: Project, path: str, field: str) -> str:
    """A kernel or initrd path. Admins: a volume of a pool on host, or a file under an
    allowed root. Others: the path of a volume the VM may use (see _may_use), that is one
    of the project's they may change or a shared boot file an admin published."""
    path = (path or "").strip()
    if not path:
        raise field_error("Give the path on the host.", field)
    if "\x00" in path or not path.startswith("/") or os.path.normpath(path) != path:
        raise field_error(f"'{path[:80]}' is not a clean absolute path.", field)
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
    """Who installs a VM of which project on which host, with which networks."""

    actor: Actor
    host: Host
    project: Project
    networks: list[Any]


def check_install(
    install: dict[str, Any], *, actor: Actor, host: Host, project: Project, networks: list[Any]
) -> dict[str, Any]:
    """The request's install part, checked: its method and what that method needs."""
    method = str(install.get("method") or "")
    if method not in METHODS:
        raise field_error(
            f"Unknown install method '{method}': use one of {', '.join(METHODS)}.", "install"
        )
    place = InstallPlace(actor, host, project, networks)
    return {"method": method, **INSTALL_CHECKS[method](install, place)}


def _iso_install(install: dict[str, Any], at: InstallPlace) -> dict[str, Any]:
    iso = _volume(
        at.actor, at.host, at.project, install.get("iso_volume"), "iso_volume", read_only=True
    )
    return {"iso_path": iso.path}


def _kernel_install(install: dict[str, Any], at: InstallPlace) -> dict[str, Any]:
    kernel = _boot_file(at.actor, at.host, at.project, str(install.get("kernel") or ""), "kernel")
    initrd = (
        _boot_file(at.actor, at.host, at.project, str(install["initrd"]), "initrd")
        if install.get("initrd")
        else ""
    )
    return {"kernel": kernel, "initrd": initrd, "cmdline": _cmdline(install.get("cmdline"))}


def _url_install(install: dict[str, Any], at: InstallPlace) -> dict[str, Any]:
    from vms.install import kickstart, tree

    location = str(install.get("location") or "").strip()
    tree.checked_url(location)
    out = {"location": location, "extra_args": _cmdline(install.get("extra_args"))}
    text = str(install.get("kickstart") or "")
    if text.strip():
        kickstart.validate_kickstart(text)
    out["kickstart"] = text
    # Its name resolved and every address checked now, and again, hop by hop, when
    # the job fetches from it (a name can answer differently by then).
    tree.target(location)
    return out


def _pxe_install(install: dict[str, Any], at: InstallPlace) -> dict[str, Any]:
    if not at.networks:
        raise field_error("A network install (PXE) needs a network to boot from.", "networks")
    return {}


def _import_install(install: dict[str, Any], at: InstallPlace) -> dict[str, Any]:
    volume = _volume(
        at.actor, at.host, at.project, install.get("volume"), "volume", read_only=False
    )
    # Booted as its recorded format, with its recorded chain, once its header is checked.
    chain = storage_services.check_content(volume, "the boot disk of a VM")
    return {
        "volume_chain": chain,
        "volume_path": volume.path,
        "volume_format": volume.format or "raw",
    }


def _cloud_image_install(install: dict[str, Any], at: InstallPlace) -> dict[str, Any]:
    from vms.install import cloudinit

    image = _volume(
        at.actor, at.host, at.project, install.get("image_volume"), "image_volume", read_only=True
    )
    if image.format not in ("qcow2", "raw"):
        raise field_error(
            f"{image.name} is {image.format}: a cloud image is qcow2 or raw.", "image_volume"
        )
    image_chain = storage_services.check_content(image, "the base of a VM's disk")
    config = install.get("cloud_init") or {}
    if not isinstance(config, dict):
        raise field_error("cloud_init must be an object.", "cloud_init")
    user_data = _user_data(install, config)
    cloudinit.validate_user_data(user_data)
    meta_data = str(config.get("meta_data") or "")
    if meta_data.strip():
        cloudinit.validate_yaml(meta_data, "meta_data", "meta-data")
    network_config = str(config.get("network_config") or "")
    if network_config.strip():
        cloudinit.validate_yaml(network_config, "network_config", "network-config")
    return {
        "image_path": image.path,
        "image_format": image.format,
        "image_chain": image_chain,
        "image_capacity": image.capacity,
        "image_pool": image.pool.name,
        "linked": bool(install.get("linked", True)),
        "user_data": user_data,
        "meta_data": meta_data,
        "network_config": network_config,
    }


def _user_data(install: dict[str, Any], config: dict[str, Any]) -> str:
    """The cloud-init user-data: made from a user, password and keys, or given as is."""
    from vms.install import cloudinit

    if not config.get("user"):
        return str(config.get("user_data") or "#cloud-config\n{}\n")
    keys = config.get("ssh_keys") or []
    hostname = re.sub(r"[^A-Za-z0-9-]", "-", str(install.get("hostname") or "vm")).strip("-")
    return cloudinit.simple_user_data(
        user=str(config["user"]),
        password=str(config.get("password") or ""),
        ssh_keys=[keys] if isinstance(keys, str) else list(keys),
        hostname=hostname[:63] or "vm",
    )


INSTALL_CHECKS: dict[str, Callable[[dict[str, Any], InstallPlace], dict[str, Any]]] = {
    "iso": _iso_install,
    "url": _url_install,
    "kernel": _kernel_install,
    "pxe": _pxe_install,
    "import": _import_install,
    "cloud-image": _cloud_image_install,
}


def _cmdline(value: Any) -> str:
    text = str(value or "").strip()
    if len(text) > 2048 or any(c in text for c in "\n\r\x00"):
        raise field_error(
            "The kernel command line must be one line of at most 2048 characters.", "cmdline"
        )
    return text


def check_disks(
    disks: list[Any], *, actor: Actor, host: Host, project: Project, name: str, allowed_pools: Any
) -> list[dict[str, Any]]:
    """The request's disks: volumes the VM may use, or new ones in pools it may use."""
    out = []
    if len(disks) > 16:
        raise field_error("At most 16 disks.", "disks")
    for i, disk in enumerate(disks):
        if not isinstance(disk, dict):
            raise field_error(
                "Each disk is an object: {pool, size_gib, format} or {volume}.", "disks"
            )
        if disk.get("volume") not in (None, ""):
            volume = _volume(actor, host, project, disk["volume"], "disks", read_only=False)
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
        pool = _pool(actor, host, disk.get("pool"), "disks", allowed_pools)
        fmt = str(disk.get("format") or "qcow2")
        if fmt not in storage_services.FORMATS:
            raise field_error(
                f"Disk {i + 1}: '{fmt}' is not a format qemu-img can create.", "disks"
            )
        preallocation = str(disk.get("preallocation") or "off")
        if preallocation not in storage_services.PREALLOCATION:
            raise field_error(f"Disk {i + 1}: unknown preallocation '{preallocation}'.", "disks")
        capacity = storage_services.capacity_bytes(disk.get("size_gib"), "disks")
        vol_name = f"{name}-disk{i}.{'qcow2' if fmt == 'qcow2' else 'img'}"
        if Volume.objects.filter(pool=pool, name=vol_name).exists():
            raise ConflictError(f"Pool {pool.name} already has a volume {vol_name}.")
        out.append(
            {
                "pool": pool.name,
                "pool_id": pool.pk,
                "name": vol_name,
                "capacity": capacity,
                "format": fmt,
                "preallocation": preallocation,
                "existing": False,
            }
        )
    return out


def check_networks(
    actor: Actor, host: Host, project: Project, ids: list[Any], template: Template | None
) -> list[dict[str, str]]:
    """The networks of host the VM joins, each allowed to project (and offered by template)."""
    from networking.models import Network
    from networking.services import traffic_filter

    visible = restrict(Network.objects.filter(host=host), actor.user, VIEW)
    allowed_networks = project.allowed_networks.all()
    out = []
    for value in ids:
        pk = object_id(value, "networks")
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


def from_template(template: Template, data: dict[str, Any]) -> dict[str, Any]:
    """The full request a template's easy form stands for."""
    size = data.get("size_gib", data.get("disk_gib", template.disk_gib))
    pool = data.get("pool") or (template.pools.values_list("pk", flat=True).first())
    install: dict[str, Any]
    if template.source == "cloud-image":
        keys = data.get("ssh_key") or data.get("ssh_keys") or []
        install = {
            "method": "cloud-image",
            "image_volume": template.image_id,
            "hostname": data.get("name", ""),
            "cloud_init": {
                "user": data.get("user") or "cloud",
                "password": data.get("password") or "",
                "ssh_keys": [keys] if isinstance(keys, str) and keys else keys,
            }
            if (keys or data.get("password"))
            else {"user_data": data.get("user_data") or "#cloud-config\n{}\n"},
        }
    elif template.source == "iso":
        install = {"method": "iso", "iso_volume": template.image_id}
    else:
        install = {"method": "url", "location": template.location, "kickstart": template.kickstart}
    return {
        "name": data.get("name"),
        "project": data.get("project"),
        "host": data.get("host") or (template.image.pool.host_id if template.image else None),
        "vcpus": data.get("vcpus", template.vcpus),
        "memory_mib": data.get("memory_mib", template.memory_mib),
        "firmware": template.firmware,
        "os_variant": template.os_variant,
        "disks": [{"pool": pool, "size_gib": size, "format": "qcow2"}] if pool else [],
        "networks": data.get("networks")
        or list(template.networks.values_list("pk", flat=True)[:1]),
        "install": install,
        "start": True,
        "size_gib": size,
    }


def within_template(template: Template, vcpus: int, memory_mib: int, data: dict[str, Any]) -> None:
    """A refusal when the VM asks for more than template allows."""
    if vcpus > template.max_vcpus:
        raise field_error(
            f"Template {template.name} allows at most {template.max_vcpus} vCPUs.", "vcpus"
        )
    if memory_mib > template.max_memory_mib:
        raise field_error(
            f"Template {template.name} allows at most {template.max_memory_mib} MiB.", "memory_mib"
        )
    try:
        size = float(data.get("size_gib") or 0)
    except (TypeError, ValueError):
        raise field_error("The disk size is a number of GiB.", "size_gib") from None
    if size > template.max_disk_gib:
        raise field_error(
            f"Template {template.name} allows disks of at most {template.max_disk_gib} GiB.",
            "size_gib",
        )
