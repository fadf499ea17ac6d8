"""Creating a VM, the request: checked, placed on a host, its quota taken and its job
queued in one transaction, so nothing exists on a host until the request was found sound.
"""

from __future__ import annotations

import math
import uuid as uuidlib

from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit, hypervisor, jobs, quotas
from panel.actors import Actor
from panel.choices import JobKind, JobState
from panel.hostcalls import on_host
from panel.models import Host, Job, Project
from panel.permissions import ALLOCATE, VIEW, holds, project_ids, restrict
from vms.models import Template, VirtualMachine
from vms.services.create.checks import (
    InstallPlace,
    check_disks,
    check_install,
    check_networks,
    from_template,
    within_template,
)
from vms.services.create.spec import (
    DEFAULT_MEMORY_MIB,
    DEFAULT_VCPUS,
    CreateRequest,
    Firmware,
    field_error,
    unknown_method,
)

# Also known here, where the tests of name patterns look it up.
from vms.services.create.spec import NAME_RE as NAME_RE
from vms.services.create.vmspec import DiskSpec, InstallSecrets, InstallSpec, Reserve, VMSpec
from vms.services.create.where import NowhereToGo, affinity_group, choose_host

GIB = 1024**3
MIN_MEMORY_MIB = 32


def create_vm(request: CreateRequest, *, actor: Actor) -> Job:
    """Check a create request, take its quota and queue the job; nothing touches a host yet."""
    template = _template(actor, request.template)
    project = _project(actor, request.project, template)
    with audit.refusals_recorded(actor, "vm.create", request.name, project=project):
        if template is not None:
            request = _template_request(template, project, request)
        group = affinity_group(actor, project, request.affinity_group)
        try:
            host = choose_host(actor, request, group)
        except NowhereToGo as refused:
            if refused.unsized is not None:
                _size(refused.unsized, request)  # a size no host has: refused on its field
            raise
        _refuse_taken(host, request.name)
        vcpus, memory_mib = _size(host, request)
        if template is not None:
            within_template(template, vcpus, memory_mib, request.easy)
        firmware = _firmware(host, request.firmware)
        networks = check_networks(actor, host, project, request.networks, template)
        disks = check_disks(
            request.disks,
            actor=actor,
            host=host,
            project=project,
            name=request.name,
            allowed_pools=_template_pools(template),
        )
        place = InstallPlace(actor, host, project, networks, request.name)
        install, secrets = _install(request, disks, place)
        spec: VMSpec = {
            "vm": str(uuidlib.uuid4()),
            "vm_name": request.name,
            "host": host.pk,
            "project": project.pk,
            "owner": getattr(actor.person, "pk", None),
            "template": template.pk if template is not None else None,
            "vcpus": vcpus,
            "memory_mib": memory_mib,
            "firmware": firmware,
            "os_variant": request.os_variant,
            "disks": disks,
            "networks": networks,
            "install": install,
            "start": request.start,
            "reserve": _reserve(vcpus, memory_mib, disks),
            "made": {"volumes": [], "domain": False},
            "affinity_group": group.pk if group is not None else None,
        }
        return _queue(spec, secrets, host, project, actor=actor)


def _template(actor: Actor, template_id: int | None) -> Template | None:
    """The template the request names, among those the actor may use; None when it names none."""
    if template_id is None:
        return None
    template = restrict(Template.objects.all(), actor.user, VIEW).filter(pk=template_id).first()
    if template is None:
        raise field_error(
            f"No template with id {template_id} that your project may use.", "template"
        )
    return template


def _project(actor: Actor, project_id: int, template: Template | None) -> Project:
    """The VM's project, in which the actor holds ALLOCATE (own-only, as members: from a
    template only)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise field_error("Choose the project the VM belongs to.", "project")
    reach = holds(actor.user, project, ALLOCATE)
    if reach is None:
        if project.pk not in project_ids(actor.user):
            raise field_error(f"No project with id {project.pk} that you can use.", "project")
        raise PermissionDenied(f"Your role in {project.name} does not allow creating VMs.")
    if reach == "own" and template is None:
        raise PermissionDenied(
            "Members create VMs from a template their project may use: choose a template."
        )
    return project


def _template_request(
    template: Template, project: Project, request: CreateRequest
) -> CreateRequest:
    """The full request of a template's easy form, once the template is offered to project."""
    if not template.projects.filter(pk=project.pk).exists():
        raise field_error(f"Template {template.name} is not offered to {project.name}.", "template")
    return from_template(template, request)


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


def _size(host: Host, request: CreateRequest) -> tuple[int, int]:
    """The vCPUs and the memory (MiB) asked for, within what host has."""
    cpus = int(host.facts.get("cpus") or 64)
    vcpus = DEFAULT_VCPUS if request.vcpus is None else request.vcpus
    _between(vcpus, "vcpus", 1, cpus, f"vCPUs (on {host.name})")
    total_mib = int(host.facts.get("memory_total_bytes") or 0) // (1024 * 1024)
    usable_mib = (
        max(
            MIN_MEMORY_MIB,
            total_mib - hypervisor.reserved_memory_bytes(total_mib * 1024 * 1024) // (1024 * 1024),
        )
        if total_mib
        else 1024 * 1024
    )
    memory_mib = DEFAULT_MEMORY_MIB if request.memory_mib is None else request.memory_mib
    _between(
        memory_mib, "memory_mib", MIN_MEMORY_MIB, usable_mib, f"Memory in MiB (on {host.name})"
    )
    return vcpus, memory_mib


def _between(number: int, field: str, low: int, high: int, what: str) -> None:
    """A refusal when number is not within low..high (what names it)."""
    if not low <= number <= high:
        raise field_error(f"{what} must be between {low} and {high}.", field)


def _firmware(host: Host, firmware: Firmware) -> Firmware:
    """bios or efi; efi only on a host that has UEFI firmware."""
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
    request: CreateRequest, disks: list[DiskSpec], place: InstallPlace
) -> tuple[InstallSpec, InstallSecrets]:
    """The request's install, checked; the methods that keep boot files need a new disk."""
    if request.install is None:  # only a template's easy form names none (see from_template)
        raise unknown_method("")
    install, secrets = check_install(request.install, place)
    if install["method"] in ("url", "cloud-image") and all(d["existing"] for d in disks):
        raise field_error(
            "This install method needs a new disk in a pool (it also keeps its boot files there).",
            "disks",
        )
    return install, secrets


def _reserve(vcpus: int, memory_mib: int, disks: list[DiskSpec]) -> Reserve:
    """The quota the VM takes: its vCPUs, memory and the GiB of the disks it makes."""
    new_bytes = sum(d["capacity"] for d in disks if not d["existing"])
    return {
        "vms": 1,
        "vcpus": vcpus,
        "memory_mib": memory_mib,
        "disk_gib": math.ceil(new_bytes / GIB),
    }


def _queue(
    spec: VMSpec, secrets: InstallSecrets, host: Host, project: Project, *, actor: Actor
) -> Job:
    """The quota taken and the create job queued, its install secrets kept apart (the task
    needs them; nobody reading the job may see them: passwords, hashes)."""
    from vms.tasks import vm_create_task

    with transaction.atomic():
        quotas.reserve(project, **spec["reserve"])
        return jobs.queue(
            JobKind.VM_CREATE,
            vm_create_task,
            spec["vm_name"],
            target=f"vm:{spec['vm']}",
            spec=dict(spec),
            actor=actor,
            host=host,
            project=project,
            action="vm.create",
            detail=(
                f"{spec['install']['method']} on {host.name}, {spec['vcpus']} vCPU, "
                f"{spec['memory_mib']} MiB"
            ),
            secrets=dict(secrets),
        )
