"""Creating VMs: `virt-install` as a service.

`create_vm()` checks everything a user can get wrong, places the VM, takes
the quota and queues one job in a single transaction, so nothing exists on a
host until the request was found sound. `run_create_job()` then allocates the
disks, builds the install media (cloud-init seed, kickstart-injected initrd),
defines and starts the domain and waits for its first console output. Every
volume and domain it makes is written into the job as it goes; any failure,
or a worker that died mid-way (see `undo_abandoned()`), undoes them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import time
import uuid as uuidlib
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit, hypervisor, jobs, quotas
from panel.choices import HostState, JobKind, JobState
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import storage as hv_storage
from panel.hypervisor.qemu_img import PinnedImage
from panel.models import Host, Job, Project
from panel.permissions import CHANGE, VIEW, allowed, is_admin, restrict, role_in
from storage import services as storage_services
from storage.models import FormatSource, StoragePool, Volume
from vms.models import Template, VirtualMachine
from vms.services.sync import sync_domain

NAME_RE = re.compile(r"^(?!\.+\Z)[A-Za-z0-9_.-]{1,63}\Z")
METHODS = ("iso", "url", "kernel", "pxe", "import", "cloud-image")
GIB = 1024**3
MIN_MEMORY_MIB = 32
CONSOLE_WAIT_SECONDS = 60
# How long the cleanup after a dead worker waits for libvirt to finish writing a volume.
ABANDONED_WAIT_SECONDS = 600
MAX_BOOT_FILE_BYTES = 512 * 1024 * 1024
# Parts of an install that hold passwords and hashes: in the job's secrets, never its result.
SECRET_KEYS = ("user_data", "meta_data", "network_config", "kickstart")


# --- checking the request ---


def _field(message: str, field: str) -> ServiceError:
    return ServiceError(message, field=field)


def _id(value: Any, field: str) -> int | None:
    """An object id from the request: a whole number, or None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _field(f"{field} must be an id (a whole number).", field)
    try:
        return int(value)
    except ValueError:
        raise _field(f"{field} must be an id (a whole number).", field) from None


def _list(value: Any, field: str) -> list[Any]:
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise _field(f"{field} must be a list.", field)
    return value


def _int(value: Any, field: str, low: int, high: int, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _field(f"{what} must be a whole number.", field) from None
    if not low <= number <= high:
        raise _field(f"{what} must be between {low} and {high}.", field)
    return number


def _place(actor: Any, host_id: Any) -> Host:
    """The host asked for, or the visible host that is up with the most free memory."""
    hosts = restrict(Host.objects.all(), actor, VIEW)
    host_id = _id(host_id, "host")
    if host_id is not None:
        host = hosts.filter(pk=host_id).first()
        if host is None:
            raise _field(f"No host with id {host_id} that you can use.", "host")
        if host.state != HostState.UP:
            raise ConflictError(f"{host.name} is {host.state}: pick a host that is up.")
        return host
    up = [h for h in hosts.filter(state=HostState.UP)]
    if not up:
        raise ConflictError("No host you may use is up: the VM has nowhere to go.")
    return max(up, key=lambda h: int(h.facts.get("memory_free_bytes", 0)))


def _may_use(actor: Any, volume: Volume, project: Project, *, read_only: bool) -> bool:
    """Whether a VM of project made by actor may use volume: admins any; others a volume of
    that project they may change, or (read only: boot media, cloud images) one an admin
    published as shared. Anything else would let the guest read another's disk."""
    return (
        is_admin(actor)
        or (volume.shared and read_only)
        or (volume.project_id == project.pk and allowed(actor, volume, CHANGE))
    )


def _volume(
    actor: Any, host: Host, project: Project, pk: Any, field: str, *, read_only: bool
) -> Volume:
    """A volume the actor may use for a VM of project on host."""
    pk = _id(pk, field)
    volume = (
        restrict(Volume.objects.select_related("pool"), actor, VIEW).filter(pk=pk).first()
        if pk is not None
        else None
    )
    if volume is None:
        raise _field(f"No volume with id {pk} that you can use.", field)
    if volume.pool.host_id != host.pk:
        raise _field(f"{volume.name} is on {volume.pool.host.name}, not {host.name}.", field)
    if not _may_use(actor, volume, project, read_only=read_only):
        raise _field(f"{volume.name} is not a volume of {project.name} that you may use.", field)
    users = storage_services.vms_using(host, [volume.path])
    if users and not read_only:
        raise ConflictError(f"{volume.name} is already a disk of {', '.join(sorted(users))}.")
    return volume


def _pool(actor: Any, host: Host, pk: Any, field: str, allowed_pools: Any = None) -> StoragePool:
    pools = restrict(StoragePool.objects.filter(host=host), actor, VIEW)
    if allowed_pools is not None:
        pools = pools.filter(pk__in=allowed_pools)
    pk = _id(pk, field)
    pool = pools.filter(pk=pk).first() if pk is not None else None
    if pool is None:
        raise _field(f"No pool with id {pk} on {host.name} that you can use.", field)
    if pool.state != "active":
        raise ConflictError(f"Pool {pool.name} is not running: an admin must start it first.")
    return pool


def _boot_file(actor: Any, host: Host, project: Project, path: str, field: str) -> str:
    """A kernel or initrd path. Admins: a volume of a pool on host, or a file under an
    allowed root. Others: the path of a volume the VM may use (see _may_use), that is one
    of the project's they may change or a shared boot file an admin published."""
    path = (path or "").strip()
    if not path:
        raise _field("Give the path on the host.", field)
    if "\x00" in path or not path.startswith("/") or os.path.normpath(path) != path:
        raise _field(f"'{path[:80]}' is not a clean absolute path.", field)
    if not is_admin(actor):
        # Looked up among the volumes the actor sees, so the answer tells nothing about
        # the others.
        volume = (
            restrict(Volume.objects.filter(pool__host=host, path=path), actor, VIEW)
            .select_related("pool")
            .first()
        )
        if volume is None or not _may_use(actor, volume, project, read_only=True):
            raise _field(
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
        raise _field(
            f"{path} is neither a volume of a pool on {host.name} nor under the directories "
            f"allowed for boot files ({', '.join(roots)}).",
            field,
        )
    return path


def _check_install(
    install: dict[str, Any], *, actor: Any, host: Host, project: Project, networks: list[Any]
) -> dict[str, Any]:
    method = str(install.get("method") or "")
    if method not in METHODS:
        raise _field(
            f"Unknown install method '{method}': use one of {', '.join(METHODS)}.", "install"
        )
    out: dict[str, Any] = {"method": method}
    if method == "iso":
        iso = _volume(actor, host, project, install.get("iso_volume"), "iso_volume", read_only=True)
        out["iso_path"] = iso.path
    elif method == "kernel":
        out["kernel"] = _boot_file(actor, host, project, str(install.get("kernel") or ""), "kernel")
        out["initrd"] = (
            _boot_file(actor, host, project, str(install["initrd"]), "initrd")
            if install.get("initrd")
            else ""
        )
        out["cmdline"] = _cmdline(install.get("cmdline"))
    elif method == "url":
        from vms.install import kickstart, tree

        location = str(install.get("location") or "").strip()
        tree.checked_url(location)
        out["location"] = location
        out["extra_args"] = _cmdline(install.get("extra_args"))
        text = str(install.get("kickstart") or "")
        if text.strip():
            kickstart.validate_kickstart(text)
        out["kickstart"] = text
        # Its name resolved and every address checked now, and again, hop by hop, when
        # the job fetches from it (a name can answer differently by then).
        tree.target(location)
    elif method == "pxe":
        if not networks:
            raise _field("A network install (PXE) needs a network to boot from.", "networks")
    elif method == "import":
        volume = _volume(actor, host, project, install.get("volume"), "volume", read_only=False)
        # Booted as its recorded format, with its recorded chain, once its header is checked.
        out["volume_chain"] = storage_services.check_content(volume, "the boot disk of a VM")
        out["volume_path"], out["volume_format"] = volume.path, volume.format or "raw"
    elif method == "cloud-image":
        from vms.install import cloudinit

        image = _volume(
            actor, host, project, install.get("image_volume"), "image_volume", read_only=True
        )
        if image.format not in ("qcow2", "raw"):
            raise _field(
                f"{image.name} is {image.format}: a cloud image is qcow2 or raw.", "image_volume"
            )
        image_chain = storage_services.check_content(image, "the base of a VM's disk")
        config = install.get("cloud_init") or {}
        if not isinstance(config, dict):
            raise _field("cloud_init must be an object.", "cloud_init")
        if config.get("user"):
            keys = config.get("ssh_keys") or []
            user_data = cloudinit.simple_user_data(
                user=str(config["user"]),
                password=str(config.get("password") or ""),
                ssh_keys=[keys] if isinstance(keys, str) else list(keys),
                hostname=re.sub(r"[^A-Za-z0-9-]", "-", str(install.get("hostname") or "vm")).strip(
                    "-"
                )[:63]
                or "vm",
            )
        else:
            user_data = str(config.get("user_data") or "#cloud-config\n{}\n")
        cloudinit.validate_user_data(user_data)
        meta_data = str(config.get("meta_data") or "")
        if meta_data.strip():
            cloudinit.validate_yaml(meta_data, "meta_data", "meta-data")
        network_config = str(config.get("network_config") or "")
        if network_config.strip():
            cloudinit.validate_yaml(network_config, "network_config", "network-config")
        out.update(
            image_path=image.path,
            image_format=image.format,
            image_chain=image_chain,
            image_capacity=image.capacity,
            image_pool=image.pool.name,
            linked=bool(install.get("linked", True)),
            user_data=user_data,
            meta_data=meta_data,
            network_config=network_config,
        )
    return out


def _cmdline(value: Any) -> str:
    text = str(value or "").strip()
    if len(text) > 2048 or any(c in text for c in "\n\r\x00"):
        raise _field(
            "The kernel command line must be one line of at most 2048 characters.", "cmdline"
        )
    return text


def _check_disks(
    disks: list[Any], *, actor: Any, host: Host, project: Project, name: str, allowed_pools: Any
) -> list[dict[str, Any]]:
    out = []
    if len(disks) > 16:
        raise _field("At most 16 disks.", "disks")
    for i, disk in enumerate(disks):
        if not isinstance(disk, dict):
            raise _field("Each disk is an object: {pool, size_gib, format} or {volume}.", "disks")
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
            raise _field(f"Disk {i + 1}: '{fmt}' is not a format qemu-img can create.", "disks")
        preallocation = str(disk.get("preallocation") or "off")
        if preallocation not in storage_services.PREALLOCATION:
            raise _field(f"Disk {i + 1}: unknown preallocation '{preallocation}'.", "disks")
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


def create_vm(data: dict[str, Any], *, actor: Any, source_ip: str | None = None) -> Job:
    """Check a create request, take its quota and queue the job; nothing touches a host yet."""
    if not isinstance(data, dict):
        raise ServiceError("Send the VM as an object of fields.")
    template = None
    template_id = _id(data.get("template"), "template")
    if template_id is not None:
        template = restrict(Template.objects.all(), actor, VIEW).filter(pk=template_id).first()
        if template is None:
            raise _field(
                f"No template with id {template_id} that your project may use.", "template"
            )
    project = Project.objects.filter(pk=_id(data.get("project"), "project") or 0).first()
    if project is None:
        raise _field("Choose the project the VM belongs to.", "project")
    role = role_in(actor, project)
    if role not in ("admin", "operator", "member"):
        if role is None:
            raise _field(f"No project with id {project.pk} that you can use.", "project")
        raise PermissionDenied(f"Your role in {project.name} does not allow creating VMs.")
    if role == "member" and template is None:
        raise PermissionDenied(
            "Members create VMs from a template their project may use: choose a template."
        )
    with audit.refusals_recorded(
        actor, "vm.create", str(data.get("name", ""))[:100], project=project, source_ip=source_ip
    ):
        if template is not None:
            if not template.projects.filter(pk=project.pk).exists():
                raise _field(
                    f"Template {template.name} is not offered to {project.name}.", "template"
                )
            data = _from_template(template, data)
        name = str(data.get("name") or "").strip()
        if not NAME_RE.match(name):
            raise _field(
                "The name must be 1 to 63 letters, digits, '-', '_' or '.' (not only dots), "
                "with no spaces, slashes or XML characters.",
                "name",
            )
        host = _place(actor, data.get("host"))
        busy = VirtualMachine.objects.filter(host=host, name=name).exclude(state="missing").exists()
        pending = Job.objects.filter(
            kind=JobKind.VM_CREATE,
            host=host,
            state__in=[JobState.QUEUED, JobState.RUNNING],
            result__vm_name=name,
        ).exists()
        if busy or pending:
            raise _field(f"{host.name} already has a VM named {name}.", "name")
        cpus = int(host.facts.get("cpus") or 64)
        vcpus = _int(data.get("vcpus", 1), "vcpus", 1, cpus, f"vCPUs (on {host.name})")
        total_mib = int(host.facts.get("memory_total_bytes") or 0) // (1024 * 1024)
        usable_mib = (
            max(
                MIN_MEMORY_MIB,
                total_mib
                - hypervisor.reserved_memory_bytes(total_mib * 1024 * 1024) // (1024 * 1024),
            )
            if total_mib
            else 1024 * 1024
        )
        memory_mib = _int(
            data.get("memory_mib", 1024),
            "memory_mib",
            MIN_MEMORY_MIB,
            usable_mib,
            f"Memory in MiB (on {host.name})",
        )
        if template is not None:
            _within_template(template, vcpus, memory_mib, data)
        wanted = data.get("firmware") or "bios"
        firmware = {"bios": "bios", "uefi": "efi", "efi": "efi"}.get(
            wanted if isinstance(wanted, str) else ""
        )
        if firmware is None:
            raise _field("Firmware is bios or uefi.", "firmware")
        if firmware == "efi":
            with on_host(host, "Firmware"):
                if "efi" not in hypervisor.firmware_choices(host.uri, host.domain_type or "qemu"):
                    raise _field(
                        f"{host.name} has no UEFI firmware (OVMF): choose bios.", "firmware"
                    )
        networks = _networks(
            actor, host, project, _list(data.get("networks"), "networks"), template
        )
        allowed_pools = (
            list(template.pools.values_list("pk", flat=True))
            if template and template.pools.exists()
            else None
        )
        disks = _check_disks(
            _list(data.get("disks"), "disks"),
            actor=actor,
            host=host,
            project=project,
            name=name,
            allowed_pools=allowed_pools,
        )
        install_request = data.get("install") or {}
        if not isinstance(install_request, dict):
            raise _field("install must be an object with a method.", "install")
        install_request = {"hostname": name, **install_request}
        install = _check_install(
            install_request,
            actor=actor,
            host=host,
            project=project,
            networks=networks,
        )
        if install["method"] in ("url", "cloud-image") and not any(
            not d["existing"] for d in disks
        ):
            raise _field(
                "This install method needs a new disk in a pool (it also keeps its boot files there).",
                "disks",
            )
        # The task needs these; nobody reading the job may see them (passwords, hashes).
        secrets = {k: install.pop(k) for k in SECRET_KEYS if k in install}
        new_bytes = sum(d["capacity"] for d in disks if not d["existing"])
        reserve = {
            "vms": 1,
            "vcpus": vcpus,
            "memory_mib": memory_mib,
            "disk_gib": math.ceil(new_bytes / GIB),
        }
        vm_id = str(uuidlib.uuid4())
        from vms.tasks import vm_create_task

        with transaction.atomic():
            quotas.reserve(project, **reserve)
            job = jobs.queue(
                JobKind.VM_CREATE,
                vm_create_task,
                name,
                target=f"vm:{vm_id}",
                spec={
                    "vm": vm_id,
                    "vm_name": name,
                    "host": host.pk,
                    "project": project.pk,
                    "owner": actor.pk if getattr(actor, "is_authenticated", False) else None,
                    "template": template.pk if template is not None else None,
                    "vcpus": vcpus,
                    "memory_mib": memory_mib,
                    "firmware": firmware,
                    "os_variant": str(data.get("os_variant") or ""),
                    "disks": disks,
                    "networks": networks,
                    "install": install,
                    "start": bool(data.get("start", True)),
                    "reserve": reserve,
                    "made": {"volumes": [], "domain": False},
                },
                actor=actor,
                host=host,
                project=project,
                action="vm.create",
                detail=f"{install['method']} on {host.name}, {vcpus} vCPU, {memory_mib} MiB",
                source_ip=source_ip,
                secrets=secrets,
            )
    return job


def _networks(
    actor: Any, host: Host, project: Project, ids: list[Any], template: Template | None
) -> list[dict[str, str]]:
    from networking.models import Network
    from networking.services import traffic_filter

    visible = restrict(Network.objects.filter(host=host), actor, VIEW)
    allowed_networks = project.allowed_networks.all()
    out = []
    for value in ids:
        pk = _id(value, "networks")
        network = visible.filter(pk=pk).first() if pk is not None else None
        if network is None:
            raise _field(f"No network with id {pk} on {host.name} that you can use.", "networks")
        if allowed_networks.exists() and not allowed_networks.filter(pk=network.pk).exists():
            raise _field(f"{project.name} may not use network {network.name}.", "networks")
        if (
            template is not None
            and template.networks.exists()
            and not template.networks.filter(pk=network.pk).exists()
        ):
            raise _field(
                f"Template {template.name} does not offer network {network.name}.", "networks"
            )
        # The new VM's owner is the actor: a member's NICs get the anti-spoofing filter.
        out.append({"network": network.name, **traffic_filter(network, actor)})
    return out


def _from_template(template: Template, data: dict[str, Any]) -> dict[str, Any]:
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
        "host": data.get("host") or (template.image.pool.host_id if template.image_id else None),
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


def _within_template(template: Template, vcpus: int, memory_mib: int, data: dict[str, Any]) -> None:
    if vcpus > template.max_vcpus:
        raise _field(
            f"Template {template.name} allows at most {template.max_vcpus} vCPUs.", "vcpus"
        )
    if memory_mib > template.max_memory_mib:
        raise _field(
            f"Template {template.name} allows at most {template.max_memory_mib} MiB.", "memory_mib"
        )
    try:
        size = float(data.get("size_gib") or 0)
    except (TypeError, ValueError):
        raise _field("The disk size is a number of GiB.", "size_gib") from None
    if size > template.max_disk_gib:
        raise _field(
            f"Template {template.name} allows disks of at most {template.max_disk_gib} GiB.",
            "size_gib",
        )


# --- the job ---


def _remember(job: Job, **made: Any) -> None:
    """Write what the job made so far, so a later cleanup finds it even after a crash."""
    job.result["made"].update(made)
    Job.objects.filter(pk=job.pk).update(result=job.result)


def _step(job: Job, progress: int, message: str) -> None:
    jobs.report(job.pk, progress=progress, message=message, log_line=message)


def run_create_job(job: Job) -> None:
    """Allocate, build media, define, start and wait; on any failure undo everything."""
    spec = job.result
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


def _build(job: Job, host: Host, spec: dict[str, Any]) -> None:
    name, install = spec["vm_name"], spec["install"]
    made: list[dict[str, str]] = spec["made"]["volumes"]
    method = install["method"]
    disk_specs: list[hypervisor.DiskSpec] = []
    new_disks = [d for d in spec["disks"] if not d["existing"]]
    boot_pool = new_disks[0]["pool"] if new_disks else ""

    # 1. Disks.
    for i, disk in enumerate(spec["disks"]):
        target = f"vd{chr(ord('a') + i)}"
        if disk["existing"]:
            disk_specs.append(
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
        # Written down before libvirt makes it: a worker killed while libvirt writes the
        # volume leaves a job whose cleanup still finds it.
        cloud = i == 0 and method == "cloud-image"
        chain = _overlay_chain(install) if cloud and install["linked"] else []
        made.append(
            {"pool": disk["pool"], "name": disk["name"], "format": _made_format(disk, cloud)}
            | ({"backing": chain} if chain else {})
        )
        _remember(job)
        try:
            if cloud:
                info = _cloud_disk(job, host, disk, install)
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
        disk_specs.append(
            hypervisor.DiskSpec(
                path=info.path,
                target=target,
                format=_made_format(disk, cloud),
                backing=storage_services.as_backing(chain),
            )
        )
    if method == "import":
        disk_specs.insert(
            0,
            hypervisor.DiskSpec(
                path=install["volume_path"],
                target="vda",
                format=install["volume_format"],
                backing=storage_services.as_backing(install.get("volume_chain")),
            ),
        )
        disk_specs = [
            dataclasses.replace(d, target=f"vd{chr(ord('a') + i)}")
            for i, d in enumerate(disk_specs)
        ]

    # 2. Install media.
    kernel = initrd = cmdline = None
    boot: tuple[str, ...] = ("hd",)
    if method == "iso":
        disk_specs.append(
            hypervisor.DiskSpec(
                path=install["iso_path"], target="sda", format="raw", bus="sata", device="cdrom"
            )
        )
        boot = ("cdrom", "hd")
    elif method == "pxe":
        boot = ("network", "hd")
    elif method == "kernel":
        kernel, initrd, cmdline = (
            install["kernel"],
            install["initrd"] or None,
            install["cmdline"] or None,
        )
    elif method == "cloud-image":
        from vms.install import cloudinit

        _step(job, 40, "building the cloud-init seed (NoCloud)")
        secrets = _secrets(job, ("user_data", "meta_data", "network_config"))
        meta = secrets["meta_data"] or cloudinit.default_meta_data(spec["vm"], name)
        iso = cloudinit.build_seed_iso(
            secrets["user_data"], meta, secrets["network_config"] or None
        )
        seed_name = f"{name}-cidata.iso"
        path = _upload(host, boot_pool, seed_name, iso)
        made.append({"pool": boot_pool, "name": seed_name})
        _remember(job)
        jobs.forget_secrets(job.pk)
        disk_specs.append(
            hypervisor.DiskSpec(path=path, target="sda", format="raw", bus="sata", device="cdrom")
        )
    installer = None
    if method == "url":
        kernel, initrd, cmdline = _tree_boot_files(job, host, spec, boot_pool, made)

    # 3. Define and start.
    _step(job, 60, f"defining {name}")
    nics = tuple(hypervisor.NicSpec(**n) for n in spec["networks"])
    final = hypervisor.DomainSpec(
        name=name,
        uuid=spec["vm"],
        vcpus=spec["vcpus"],
        memory_mib=spec["memory_mib"],
        domain_type=host.domain_type or "qemu",
        firmware=spec["firmware"],
        disks=tuple(disk_specs),
        nics=nics,
        boot=boot,
        kernel=kernel if method == "kernel" else None,
        initrd=initrd if method == "kernel" else None,
        cmdline=cmdline if method == "kernel" else None,
        serial_console=True,
        vnc=True,
        description=f"os_variant={spec['os_variant']}" if spec["os_variant"] else "",
    )
    if method == "url":
        # The installer boots once from the tree's kernel; its reboot ends that boot and
        # the VM starts from its disk afterwards, as virt-install does.
        from dataclasses import replace

        installer = replace(
            final, kernel=kernel, initrd=initrd, cmdline=cmdline, on_reboot="destroy"
        )
    info = hypervisor.install_domain(host.uri, final, installer=installer, start=spec["start"])
    _remember(job, domain=True)

    # 4. Wait for it to boot.
    if spec["start"]:
        _step(job, 70, f"started; waiting for {name}'s first console output")
        seen = _first_output(host, spec["vm"], CONSOLE_WAIT_SECONDS)
        jobs.report(
            job.pk,
            progress=95,
            log_line=f"console: {seen[:120]!r}"
            if seen
            else f"no console output in {CONSOLE_WAIT_SECONDS} s (the OS may not use the serial console)",
        )
        info = hypervisor.get_domain(host.uri, spec["vm"])

    # 5. The rows.
    _finish(job, host, spec, info)
    jobs.report(
        job.pk,
        progress=100,
        message=f"{name} is {info.state}.",
        log_line=f"{name} created ({info.state})",
    )


def _made_format(disk: dict[str, Any], cloud: bool) -> str:
    """The format of a disk the job makes: a cloud image's boot disk is always qcow2."""
    return "qcow2" if cloud else disk["format"]


def _overlay_chain(install: dict[str, Any]) -> list[dict[str, str]]:
    """The chain below a cloud image's linked overlay: the image, then its own."""
    image = {"path": install["image_path"], "format": install["image_format"]}
    return [image, *install.get("image_chain", [])]


def _cloud_disk(
    job: Job, host: Host, disk: dict[str, Any], install: dict[str, Any]
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
        info = hv_storage.resize_volume(
            host.uri, disk["pool"], disk["name"], capacity, shrink=False
        )
    return info


def _tree_boot_files(
    job: Job, host: Host, spec: dict[str, Any], pool: str, made: list[dict[str, str]]
) -> tuple[str, str, str]:
    """Fetch the tree's kernel and initrd, inject the kickstart, put both into pool."""
    from vms.install import kickstart, tree

    install, name = spec["install"], spec["vm_name"]
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


def _first_output(host: Host, uuid: str, timeout: float) -> str:
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


def _finish(job: Job, host: Host, spec: dict[str, Any], info: hypervisor.DomainInfo) -> None:
    """The VM and volume rows, owned by the project; the job's reservation handed over."""
    project = Project.objects.get(pk=spec["project"])
    owner_id = spec["owner"]
    with transaction.atomic():
        vm = sync_domain(host, info)
        vm.project = project
        vm.owner_id = owner_id
        vm.template = Template.objects.filter(pk=spec.get("template") or 0).first()
        vm.save(update_fields=["project", "owner", "template"])
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
    spec = job.result
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
