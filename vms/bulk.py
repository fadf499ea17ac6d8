"""Actions on the VMs selected in the VM list, one VM at a time: each goes through the
same service (rights, claims, audit) as on its own page, and one VM's refusal does not
stop the others."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Job

from . import services
from .choices import VMState
from .models import VirtualMachine
from .services.migrate import MigrationAsk, migrate_vm

# What the list's buttons send, and what the outcome message calls it.
BULK_ACTIONS = {
    "start": "Start",
    "shutdown": "Shut down",
    "force-off": "Force off",
    "migrate": "Migrate",
    "delete": "Delete",
    "forget": "Forget missing",
}


def run(
    request: HttpRequest, action: str, vms: QuerySet[VirtualMachine]
) -> tuple[list[str], list[str]]:
    """(what was done, one line per VM refused) for action on each of vms."""
    actor = Actor.of(request)
    ask = None
    if action == "migrate":
        try:
            ask = MigrationAsk.parse({"target_host": request.POST.get("target_host") or None})
        except ServiceError as exc:
            return [], [exc.message]
    done, failed = [], []
    for vm in vms.select_related("host", "project"):
        try:
            done.append(_one(vm, action, actor, ask))
        except (ServiceError, PermissionDenied) as exc:
            failed.append(f"{vm.name}: {getattr(exc, 'message', None) or exc}")
    return done, failed


def _one(vm: VirtualMachine, action: str, actor: Actor, ask: MigrationAsk | None) -> str:
    """vm's name, with the job doing action when there is one."""
    if action == "forget" and vm.state != VMState.MISSING:
        raise ServiceError(
            f"it is on {vm.host.name} ({vm.state}), not missing: Forget missing only "
            "removes VMs gone from their host; delete it instead."
        )
    outcome: Job | VirtualMachine | None
    if action in ("forget", "delete"):
        outcome = services.delete_vm(vm, actor=actor)  # disks stay in their pools
    elif ask is not None:
        outcome = migrate_vm(vm, ask, actor=actor)
    else:
        outcome = services.perform_action(vm, action, actor=actor)
    return f"{vm.name} (job #{outcome.pk})" if isinstance(outcome, Job) else vm.name
