"""What the VM services share: hypervisor errors made readable, the actor's right
checked, the VM claimed for a quick change, a job queued on it, and its row read again
from its host.
"""

from __future__ import annotations

import contextlib
from typing import Any

from panel import hypervisor, jobs, locks
from panel.hostcalls import on_host
from panel.models import Job
from panel.permissions import allowed
from vms.models import VirtualMachine
from vms.services.sync import mark_missing, still_there, sync_domain


def on_vm_host(
    vm: VirtualMachine, failed: str | None = None
) -> contextlib.AbstractContextManager[None]:
    """Hypervisor calls for vm: their errors become service errors a user can read.

    A domain the host no longer has is marked missing (409); an unreachable host is
    503; any other refusal is 409 with libvirt's reason, prefixed by `failed` (default:
    the VM's name)."""
    return on_host(
        vm.host,
        failed or vm.name,
        gone=f"{vm.name} is no longer on {vm.host.name}; it is now marked missing.",
        forget=lambda: mark_missing(vm.host, str(vm.pk)),
    )


def require_right(actor: Any, vm: VirtualMachine, action: str, verb: str) -> None:
    """PermissionDenied unless actor's role on vm allows action (verb says what was refused)."""
    from django.core.exceptions import PermissionDenied

    if not allowed(actor, vm, action):
        raise PermissionDenied(f"Your role does not allow you to {verb} {vm.name}.")


def apply_info(vm: VirtualMachine, info: hypervisor.DomainInfo | None) -> VirtualMachine:
    """The VM's row updated from info, or from its host when info is None."""
    if info is not None:
        return sync_domain(vm.host, info)
    try:
        return sync_domain(vm.host, hypervisor.get_domain(vm.host.uri, str(vm.pk)))
    except hypervisor.NotFound:
        mark_missing(vm.host, str(vm.pk))
        return still_there(vm)


def reread(vm: VirtualMachine) -> VirtualMachine:
    """The VM's row read again from its host (marked missing when its domain is gone)."""
    return apply_info(vm, None)


def claimed(vm: VirtualMachine, what: str, actor: Any, *, jobs_too: bool = True) -> Any:
    """vm claimed for a quick change (see panel.locks): a concurrent action (or job) gets 409.
    The claim is the request's first write, made before the host is asked anything."""
    who = getattr(actor, "username", "") or "the panel"
    return locks.hold(f"vm:{vm.pk}", label=vm.name, what=f"{what} ({who})", jobs_too=jobs_too)


def queue_vm_job(
    vm: VirtualMachine,
    kind: str,
    task: Any,
    spec: dict[str, Any],
    *,
    actor: Any,
    action: str,
    detail: str,
    source_ip: str | None,
) -> Job:
    """A job on vm with its spec, audited, its task sent on commit; inside the caller's transaction."""
    return jobs.queue(
        kind,
        task,
        vm,
        target=f"vm:{vm.pk}",
        spec={"vm": str(vm.pk), "vm_name": vm.name, **spec},
        actor=actor,
        host=vm.host,
        project=vm.project,
        action=action,
        detail=detail,
        source_ip=source_ip,
    )


def undo_abandoned(job: Job) -> str:
    """A VM job whose worker died, with nothing of its own to remove: the VM's row read
    again from its host; what to tell the user."""
    vm = VirtualMachine.objects.select_related("host").filter(pk=job.result.get("vm")).first()
    if vm is None:
        return "its VM is no longer in the panel"
    try:
        vm = apply_info(vm, None)
    except hypervisor.HypervisorError:
        return f"check {vm.name}: {vm.host.name} could not be read"
    return f"{vm.name} is {vm.get_state_display().lower()}: check it before trying again"
