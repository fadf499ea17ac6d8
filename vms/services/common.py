"""What the VM services share: hypervisor errors made readable, the actor's right
checked, the VM claimed for a quick change, a job queued on it, its row read again from
its host, and the frames of a change made at once (vm_change) and of a request for a
job (vm_job).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit, hypervisor, jobs, locks
from panel.actors import Actor
from panel.exceptions import ConflictError
from panel.hostcalls import on_host
from panel.models import Job
from panel.permissions import allowed
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services.sync import mark_missing, refresh_details, still_there, sync_domain


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


def require_right(actor: Actor, vm: VirtualMachine, action: str, verb: str) -> None:
    """PermissionDenied unless actor's role on vm allows action (verb says what was refused)."""
    if not allowed(actor.user, vm, action):
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


def claimed(vm: VirtualMachine, what: str, actor: Actor, *, jobs_too: bool = True) -> Any:
    """vm claimed for a quick change (see panel.locks): a concurrent action (or job) gets 409.
    The claim is the request's first write, made before the host is asked anything."""
    who = actor.username
    return locks.hold(f"vm:{vm.pk}", label=vm.name, what=f"{what} ({who})", jobs_too=jobs_too)


class VMChange:
    """A change to a VM being made (see vm_change): its host's calls and its outcome."""

    def __init__(
        self, vm: VirtualMachine, actor: Actor, action: str, *, jobs_too: bool = True
    ) -> None:
        self.vm, self.actor, self.action, self.jobs_too = vm, actor, action, jobs_too

    def on_host(self, failed: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Around the hypervisor calls: their errors as a user reads them (on_vm_host)."""
        return on_vm_host(self.vm, failed)

    def claim(self, what: str) -> Any:
        """The VM claimed while the host is changed: a concurrent action gets 409."""
        return claimed(self.vm, what, self.actor, jobs_too=self.jobs_too)

    def done(
        self, info: hypervisor.DomainInfo | None, detail: str = "", *, details: bool = False
    ) -> VirtualMachine:
        """The VM's row updated from the host's answer (read again when None; with its
        details, addresses included, when details), the change audited and the browsers
        watching it told, in one transaction."""
        with transaction.atomic():
            self.vm = refresh_details(self.vm) if details else apply_info(self.vm, info)
            audit.record(self.actor, self.action, self.vm, detail=detail)
        return self.vm


@contextlib.contextmanager
def vm_change(
    vm: VirtualMachine,
    actor: Actor,
    action: str,
    verb: str,
    *,
    right: str,
    while_jobs_run: bool = False,
) -> Iterator[VMChange]:
    """The frame of a change made at once to a VM's definition or devices: refused before
    anything is asked unless actor holds right (a privilege) on vm (403, "you may not <verb> it"), it is on
    its host and no job runs on it (409; with while_jobs_run, jobs do not stand in the
    way, other quick changes still do); a refusal inside (bad input, the host's) is
    audited as action after the rollback. The body calls the host within
    change.on_host() under change.claim() and ends with change.done()."""
    require_right(actor, vm, right, verb)
    if vm.state == VMState.MISSING:
        raise ConflictError(f"{vm.name} is missing from its host.")
    if not while_jobs_run:
        locks.refuse_if_busy(f"vm:{vm.pk}", vm.name)
    with audit.refusals_recorded(actor, action, vm, project=vm.project):
        yield VMChange(vm, actor, action, jobs_too=not while_jobs_run)


def queue_vm_job(
    vm: VirtualMachine,
    kind: str,
    task: Any,
    spec: dict[str, Any],
    *,
    actor: Actor,
    action: str,
    detail: str,
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
    )


class VMJob:
    """A job being asked for on a VM (see vm_job): the last checks and the queueing."""

    def __init__(self, vm: VirtualMachine, actor: Actor, action: str) -> None:
        self.vm, self.actor, self.action = vm, actor, action

    def ready(self, missing: str) -> None:
        """The last refusals before queueing (409): the VM missing from its host ("<vm> is
        missing from its host: <missing>."), or a job already queued or running on it."""
        if self.vm.state == VMState.MISSING:
            raise ConflictError(f"{self.vm.name} is missing from its host: {missing}.")
        locks.refuse_if_busy(f"vm:{self.vm.pk}", self.vm.name)

    def queue(self, kind: str, task: Any, spec: dict[str, Any], detail: str) -> Job:
        """The job queued with its spec and audited as the action; its task is sent on
        commit. Inside the caller's transaction when there is one (rows made with it)."""
        with transaction.atomic():
            return queue_vm_job(
                self.vm, kind, task, spec, actor=self.actor, action=self.action, detail=detail
            )


@contextlib.contextmanager
def vm_job(
    vm: VirtualMachine, actor: Actor, action: str, verb: str, *, right: str
) -> Iterator[VMJob]:
    """The frame of a request for a job on a VM: refused (403, "you may not <verb> it")
    unless actor has right on vm; the body checks the request, calls request.ready() and
    ends with request.queue(); a refusal inside is audited as action after the rollback."""
    require_right(actor, vm, right, verb)
    with audit.refusals_recorded(actor, action, vm, project=vm.project):
        yield VMJob(vm, actor, action)


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
