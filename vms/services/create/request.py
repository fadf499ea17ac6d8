"""Creating a VM, the request: checked, placed on a host, its quota taken and its job
queued in one transaction, so nothing exists on a host until the request was found sound.
"""

from __future__ import annotations

import math
import re
import uuid as uuidlib
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit, hypervisor, jobs, quotas
from panel.actors import Actor
from panel.choices import JobKind, JobState
from panel.exceptions import ServiceError
from panel.hostcalls import on_host
from panel.models import Host, Job, Project
from panel.permissions import VIEW, restrict, role_in
from vms.models import Template, VirtualMachine
from vms.services.create.checks import (
    check_disks,
    check_install,
    check_networks,
    choose_host,
    field_error,
    from_template,
    int_between,
    list_field,
    object_id,
    within_template,
)

NAME_RE = re.compile(r"^(?!\.+\Z)[A-Za-z0-9_.-]{1,63}\Z")
GIB = 1024**3
MIN_MEMORY_MIB = 32
# Parts of an install that hold passwords and hashes: in the job's secrets, never its result.
SECRET_KEYS = ("user_data", "meta_data", "network_config", "kickstart")


def create_vm(data: dict[str, Any], *, actor: Actor) -> Job:
    """Check a create request, take its quota and queue the job; nothing touches a host yet."""
    if not isinstance(data, dict):
        raise ServiceError("Send the VM as an object of fields.")
    template = _template(actor, data)
    project = _project(actor, data, template)
    with audit.refusals_recorded(
        actor, "vm.create", str(data.get("name", ""))[:100], project=project
    ):
        if template is not None:
            data = _template_request(template, project, data)
        name = _name(data)
        host = choose_host(actor, data.get("host"))
        _refuse_taken(host, name)
        vcpus, memory_mib = _size(host, data)
        if template is not None:
            within_template(template, vcpus, memory_mib, data)
        firmware = _firmware(host, data)
        networks = check_networks(
            actor, host, project, list_field(data.get("networks"), "networks"), template
        )
        disks = check_disks(
            list_field(data.get("disks"), "disks"),
            actor=actor,
            host=host,
            project=project,
            name=name,
            allowed_pools=_template_pools(template),
        )
        install = _install(
            data, name, disks, actor=actor, host=host, project=project, networks=networks
        )
        spec = {
            "vm_name": name,
            "host": host.pk,
            "project": project.pk,
            "owner": getattr(actor.person, "pk", None),
            "template": template.pk if template is not None else None,
            "vcpus": vcpus,
            "memory_mib": memory_mib,
            "firmware": firmware,
            "os_variant": str(data.get("os_variant") or ""),
            "disks": disks,
            "networks": networks,
            "install": install,
            "start": bool(data.get("start", True)),
        }
        return _queue(spec, host, project, actor=actor)


def _template(actor: Actor, data: dict[str, Any]) -> Template | None:
    """The template the request names, among those the actor may use; None when it names none."""
    template_id = object_id(data.get("template"), "template")
    if template_id is None:
        return None
    template = restrict(Template.objects.all(), actor.user, VIEW).filter(pk=template_id).first()
    if template is None:
        raise field_error(
            f"No template with id {template_id} that your project may use.", "template"
        )
    return template


def _project(actor: Actor, data: dict[str, Any], template: Template | None) -> Project:
    """The VM's project, in which the actor may create VMs (members: from a template only)."""
    project = Project.objects.filter(pk=object_id(data.get("project"), "project") or 0).first()
    if project is None:
        raise field_error("Choose the project the VM belongs to.", "project")
    role = role_in(actor.user, project)
    if role not in ("admin", "operator", "member"):
        if role is None:
            raise field_error(f"No project with id {project.pk} that you can use.", "project")
        raise PermissionDenied(f"Your role in {project.name} does not allow creating VMs.")
    if role == "member" and template is None:
        raise PermissionDenied(
            "Members create VMs from a template their project may use: choose a template."
        )
    return project


def _template_request(template: Template, project: Project, data: dict[str, Any]) -> dict[str, Any]:
    """The full request of a template's easy form, once the template is offered to project."""
    if not template.projects.filter(pk=project.pk).exists():
        raise field_error(f"Template {template.name} is not offered to {project.name}.", "template")
    return from_template(template, data)


def _name(data: dict[str, Any]) -> str:
    name = str(data.get("name") or "").strip()
    if not NAME_RE.match(name):
        raise field_error(
            "The name must be 1 to 63 letters, digits, '-', '_' or '.' (not only dots), "
            "with no spaces, slashes or XML characters.",
            "name",
        )
    return name


def _refuse_taken(host: Host, name: str) -> None:
    """A refusal when host has a VM named name, or a create of one is under way."""
    busy = VirtualMachine.objects.filter(host=host, name=name).exclude(state="missing").exists()
    pending = Job.objects.filter(
        kind=JobKind.VM_CREATE,
        host=host,
        state__in=[JobState.QUEUED, JobState.RUNNING],
        result__vm_name=name,
    ).exists()
    if busy or pending:
        raise field_error(f"{host.name} already has a VM named {name}.", "name")


def _size(host: Host, data: dict[str, Any]) -> tuple[int, int]:
    """The vCPUs and the memory (MiB) asked for, within what host has."""
    cpus = int(host.facts.get("cpus") or 64)
    vcpus = int_between(data.get("vcpus", 1), "vcpus", 1, cpus, f"vCPUs (on {host.name})")
    total_mib = int(host.facts.get("memory_total_bytes") or 0) // (1024 * 1024)
    usable_mib = (
        max(
            MIN_MEMORY_MIB,
            total_mib - hypervisor.reserved_memory_bytes(total_mib * 1024 * 1024) // (1024 * 1024),
        )
        if total_mib
        else 1024 * 1024
    )
    memory_mib = int_between(
        data.get("memory_mib", 1024),
        "memory_mib",
        MIN_MEMORY_MIB,
        usable_mib,
        f"Memory in MiB (on {host.name})",
    )
    return vcpus, memory_mib


def _firmware(host: Host, data: dict[str, Any]) -> str:
    """bios or efi; efi only on a host that has UEFI firmware."""
    wanted = data.get("firmware") or "bios"
    firmware = {"bios": "bios", "uefi": "efi", "efi": "efi"}.get(
        wanted if isinstance(wanted, str) else ""
    )
    if firmware is None:
        raise field_error("Firmware is bios or uefi.", "firmware")
    if firmware == "efi":
        with on_host(host, "Firmware"):
            if "efi" not in hypervisor.firmware_choices(host.uri, host.domain_type or "qemu"):
                raise field_error(
                    f"{host.name} has no UEFI firmware (OVMF): choose bios.", "firmware"
                )
    return firmware


def _template_pools(template: Template | None) -> list[int] | None:
    """The pools a template's VMs are limited to; None when any pool will do."""
    if template and template.pools.exists():
        return list(template.pools.values_list("pk", flat=True))
    return None


def _install(
    data: dict[str, Any],
    name: str,
    disks: list[dict[str, Any]],
    *,
    actor: Actor,
    host: Host,
    project: Project,
    networks: list[Any],
) -> dict[str, Any]:
    """The request's install, checked; the methods that keep boot files need a new disk."""
    install_request = data.get("install") or {}
    if not isinstance(install_request, dict):
        raise field_error("install must be an object with a method.", "install")
    install = check_install(
        {"hostname": name, **install_request},
        actor=actor,
        host=host,
        project=project,
        networks=networks,
    )
    if install["method"] in ("url", "cloud-image") and not any(not d["existing"] for d in disks):
        raise field_error(
            "This install method needs a new disk in a pool (it also keeps its boot files there).",
            "disks",
        )
    return install


def _queue(spec: dict[str, Any], host: Host, project: Project, *, actor: Actor) -> Job:
    """The quota taken and the create job queued, its install secrets kept apart."""
    from vms.tasks import vm_create_task

    install = spec["install"]
    # The task needs these; nobody reading the job may see them (passwords, hashes).
    secrets = {k: install.pop(k) for k in SECRET_KEYS if k in install}
    new_bytes = sum(d["capacity"] for d in spec["disks"] if not d["existing"])
    reserve = {
        "vms": 1,
        "vcpus": spec["vcpus"],
        "memory_mib": spec["memory_mib"],
        "disk_gib": math.ceil(new_bytes / GIB),
    }
    vm_id = str(uuidlib.uuid4())
    with transaction.atomic():
        quotas.reserve(project, **reserve)
        return jobs.queue(
            JobKind.VM_CREATE,
            vm_create_task,
            spec["vm_name"],
            target=f"vm:{vm_id}",
            spec={
                "vm": vm_id,
                **spec,
                "reserve": reserve,
                "made": {"volumes": [], "domain": False},
            },
            actor=actor,
            host=host,
            project=project,
            action="vm.create",
            detail=(
                f"{install['method']} on {host.name}, {spec['vcpus']} vCPU, "
                f"{spec['memory_mib']} MiB"
            ),
            secrets=secrets,
        )
