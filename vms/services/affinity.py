"""Affinity groups: VMs of a project that placement keeps apart or together.

Those who hold ALLOCATE on every VM of the project (operators, and admins) make and
delete groups and add or remove VMs; everyone with a role in the project sees them. A
VM added must be of the group's project. Adding moves nothing: the rule holds from the
next placement (create, drain)."""

from __future__ import annotations

import re

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import Http404

from panel import audit
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Project
from panel.permissions import ALLOCATE, VIEW, clean_pk, holds, restrict
from vms.models import AffinityGroup, VirtualMachine

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
KINDS = (AffinityGroup.APART, AffinityGroup.TOGETHER)


def require_operator(actor: Actor, project: Project) -> None:
    """PermissionDenied unless actor may change project's affinity groups."""
    if holds(actor.user, project, ALLOCATE) != "all":
        raise PermissionDenied(f"Only operators of {project.name} can change its affinity groups.")


def create_group(project: Project, name: str, kind: str, *, actor: Actor) -> AffinityGroup:
    """A new, empty affinity group of project."""
    require_operator(actor, project)
    with audit.refusals_recorded(actor, "affinity.create", name, project=project):
        if not NAME_RE.match(name or ""):
            raise ServiceError(
                "A group's name is 1 to 63 letters, digits, '.', '_' or '-'.", field="name"
            )
        if kind not in KINDS:
            raise ServiceError(
                "kind is apart (keep the VMs on different hosts) or together (on one host).",
                field="kind",
            )
        try:
            with transaction.atomic():
                group = AffinityGroup.objects.create(project=project, name=name, kind=kind)
                audit.record(actor, "affinity.create", group, project=project, detail=kind)
        except IntegrityError:
            raise ServiceError(
                f"{project.name} already has a group named {name}.", field="name"
            ) from None
    return group


def delete_group(group: AffinityGroup, *, actor: Actor) -> None:
    """Remove an affinity group (its VMs stay where they are)."""
    require_operator(actor, group.project)
    with transaction.atomic():
        audit.record(actor, "affinity.delete", group, project=group.project)
        group.delete()


def vm_of(group: AffinityGroup, vm_id: object, actor: Actor) -> VirtualMachine:
    """A VM of the group's project that actor sees: 404 for any other."""
    if vm_id in (None, ""):
        raise ServiceError("Name the VM (its id) to add or remove.", field="vm")
    found = (
        restrict(VirtualMachine.objects.filter(project=group.project), actor.user, VIEW)
        .filter(pk=clean_pk(VirtualMachine, vm_id))
        .first()
    )
    if found is None:
        raise Http404(f"No VM {vm_id} in {group.project.name}.")
    return found


def set_member(group: AffinityGroup, vm: VirtualMachine, member: bool, *, actor: Actor) -> None:
    """Add vm to group, or remove it."""
    require_operator(actor, group.project)
    if vm.project_id != group.project_id:
        raise Http404(f"No VM {vm.pk} in {group.project.name}.")
    with transaction.atomic():
        if member:
            group.vms.add(vm)
        else:
            group.vms.remove(vm)
        audit.record(
            actor,
            "affinity.add" if member else "affinity.remove",
            group,
            project=group.project,
            detail=vm.name,
        )
