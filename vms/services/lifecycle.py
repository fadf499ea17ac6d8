"""A VM's lifecycle: the power verbs (quick ones at once, shutdown, save and restore as
jobs), autostart, assigning it to a project, editing its XML, its VNC password, and
deleting it.

Every action checks the actor's right on the VM, writes its audit row in the
same transaction, and either calls the hypervisor (bounded, answered at once)
or creates a Job whose Celery task does the work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from networking.models import Network
from panel import audit, hypervisor, jobs, locks, rows
from panel.actors import Actor
from panel.choices import HostState, JobKind, JobState
from panel.exceptions import ConflictError, GoneError, ServiceError, UnavailableError
from panel.hostcalls import on_host
from panel.models import Job, Project
from panel.permissions import ALLOCATE, CONFIG_CPU_MEMORY, POWER, is_admin
from panel.services import cancel_job
from storage.models import Volume
from storage.services import check_vm_disks
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services.common import (
    apply_info,
    claimed,
    on_vm_host,
    queue_vm_job,
    require_right,
    vm_change,
    vm_job,
)
from vms.services.sync import refresh_details

# Quick verbs answered at once; the rest run as jobs.
DIRECT_ACTIONS = {"start", "force-off", "reboot", "reset", "suspend", "resume"}
JOB_ACTIONS = {"shutdown", "save", "restore"}
ACTIONS = DIRECT_ACTIONS | JOB_ACTIONS


def _direct(vm: VirtualMachine, action: str, mode: str) -> hypervisor.DomainInfo | None:
    uri, uuid = vm.host.uri, str(vm.pk)
    if action == "start":
        return hypervisor.start_domain(uri, uuid)
    if action == "force-off":
        hypervisor.destroy_domain(uri, uuid)
    elif action == "reboot":
        hypervisor.reboot_domain(uri, uuid, mode)
    elif action == "reset":
        hypervisor.reset_domain(uri, uuid)
    elif action == "suspend":
        return hypervisor.suspend_domain(uri, uuid)
    elif action == "resume":
        return hypervisor.resume_domain(uri, uuid)
    return None


def perform_action(
    vm: VirtualMachine,
    action: str,
    *,
    actor: Actor,
    mode: str = "acpi",
    timeout: int = 120,
) -> VirtualMachine | Job:
    """Run a lifecycle verb: quick ones return the updated VM, long ones a queued Job."""
    if action not in ACTIONS:
        raise ServiceError(f"Unknown action '{action}': use one of {', '.join(sorted(ACTIONS))}.")
    if mode not in ("acpi", "agent"):
        raise ServiceError(f"Unknown mode '{mode}': use acpi or agent.", field="mode")
    require_right(actor, vm, POWER, action.replace("-", " "))
    with audit.refusals_recorded(actor, f"vm.{action}", vm, project=vm.project):
        if vm.state == VMState.MISSING:
            raise ConflictError(
                f"{vm.name} is missing from its host: there is nothing to {action}."
            )
        shutdown = _waiting_shutdown(vm) if action == "force-off" else None
        if shutdown is None:
            locks.refuse_if_busy(f"vm:{vm.pk}", vm.name)
        if action in JOB_ACTIONS:
            if vm.host.state == HostState.DOWN:
                # A job would only fail later: say so now.
                raise UnavailableError(
                    f"{vm.host.name} is down ({vm.host.last_error or 'libvirtd does not answer'}): "
                    f"{action} {vm.name} once the host is back up."
                )
            if action == "restore":
                _refuse_unsaved(vm)
            return _queue(vm, action, actor=actor, mode=mode, timeout=timeout)
        if action in ("start", "restore"):
            # qemu opens the disks now: each as its recorded format, its header checked.
            check_vm_disks(vm.host, vm.disks, "booted")
            _refuse_stopped_networks(vm)
        # One action at a time on a VM: the claim is written before the host is touched,
        # so a request that cannot write (busy VM, locked database) changes nothing.
        with claimed(vm, action, actor, jobs_too=shutdown is None):
            if shutdown is not None:
                _overrule(shutdown, actor)
            with on_vm_host(vm):
                info = _direct(vm, action, mode)
            with transaction.atomic():
                vm = apply_info(vm, info)
                audit.record(
                    actor,
                    f"vm.{action}",
                    vm,
                    project=vm.project,
                    detail=f"mode {mode}" if action == "reboot" else "",
                )
    return vm


def _refuse_stopped_networks(vm: VirtualMachine) -> None:
    """A refusal (409) naming the networks of vm's NICs that are not running on its host,
    which libvirt would refuse the start for in its own words. Only networks the panel
    has as stopped are asked about again."""
    names = {nic.get("source") for nic in vm.nics if nic.get("type") == "network"}
    stopped = []
    for network in Network.objects.filter(host=vm.host_id, name__in=names, active=False):
        with on_host(vm.host, f"Network '{network.name}'"):
            if not hypervisor.get_network(vm.host.uri, network.name).active:
                stopped.append(network.name)
    if stopped:
        listed = ", ".join(f"'{name}'" for name in sorted(stopped))
        raise ConflictError(
            f"{vm.name} has a NIC on network {listed}, which is not running on "
            f"{vm.host.name}: start the network first (Networks page), or detach the NIC."
        )


def _refuse_unsaved(vm: VirtualMachine) -> None:
    """A refusal (409) unless vm's host holds a saved state of it, asked now: a restore
    job would only fail."""
    with on_vm_host(vm):
        saved = hypervisor.has_saved_state(vm.host.uri, str(vm.pk))
    if not saved:
        raise ConflictError(f"{vm.name} has no saved state to restore: start it instead.")


def _waiting_shutdown(vm: VirtualMachine) -> Job | None:
    """The shutdown job waiting for vm to power off, if that is what runs on it: force off
    overrules it (the job then sees the VM off and ends), whatever else runs is waited for."""
    job = locks.active_job(f"vm:{vm.pk}")
    return job if job is not None and job.kind == JobKind.VM_SHUTDOWN else None


def _overrule(shutdown: Job, actor: Actor) -> None:
    """A shutdown job given up for a force off: cancelled if it has not started, told so
    in its log if it waits (it ends once it sees the VM off)."""
    if shutdown.state == JobState.QUEUED:
        with contextlib.suppress(ConflictError):  # it finished meanwhile: nothing to give up
            cancel_job(shutdown, actor=actor)
    else:
        jobs.report(shutdown.pk, log_line=f"forced off by {actor.username}")


def _queue(vm: VirtualMachine, action: str, *, actor: Actor, mode: str, timeout: int) -> Job:
    from vms.tasks import vm_action_task, vm_save_restore_task  # vms.tasks imports this module

    kind, task = {
        "shutdown": (JobKind.VM_SHUTDOWN, vm_action_task),
        "save": (JobKind.VM_SAVE, vm_save_restore_task),
        "restore": (JobKind.VM_RESTORE, vm_save_restore_task),
    }[action]
    with transaction.atomic():
        return queue_vm_job(
            vm,
            kind,
            task,
            {"action": action, "mode": mode, "timeout": timeout},
            actor=actor,
            action=f"vm.{action}",
            detail="",
        )


def run_action_job(job: Job) -> None:
    """The body of a shutdown/save/restore job, reporting progress as it goes."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host").filter(pk=spec["vm"]).first()
    if vm is None:
        raise ServiceError("The VM of this job was removed.")
    uri, uuid, action = vm.host.uri, str(vm.pk), spec["action"]
    with on_vm_host(vm):
        if action == "shutdown":
            jobs.report(
                job.pk,
                progress=10,
                message=f"Asking {vm.name} to shut down ({spec['mode']})",
                log_line=f"shutdown request sent ({spec['mode']})",
            )
            hypervisor.shutdown_domain(uri, uuid, spec["mode"])
            timeout = int(spec.get("timeout", 120))
            waited = 0
            state = None
            while waited < timeout and state is None:
                state = hypervisor.wait_for_state(
                    uri, uuid, {"shutoff", "missing"}, min(5, timeout - waited)
                )
                waited += 5
                jobs.report(
                    job.pk,
                    progress=10 + int(80 * min(waited, timeout) / timeout),
                    message=f"Waiting for {vm.name} to power off ({min(waited, timeout)} s)",
                )
            if state is None:
                raise ServiceError(
                    f"{vm.name} ignored the shutdown request for {timeout} s: its OS may not handle "
                    "ACPI (or has no guest agent). Use Force off, or try again."
                )
        elif action == "save":
            jobs.report(
                job.pk,
                progress=20,
                message=f"Saving the memory of {vm.name} to disk",
                log_line="managed save started",
            )
            hypervisor.save_domain(uri, uuid)
        elif action == "restore":
            jobs.report(
                job.pk,
                progress=20,
                message=f"Restoring {vm.name} from its saved state",
                log_line="restore started",
            )
            hypervisor.restore_domain(uri, uuid)
    # After a save or a restore the VM's details say whether it has a saved state now.
    vm = refresh_details(vm) if action in ("save", "restore") else apply_info(vm, None)
    jobs.report(
        job.pk,
        progress=100,
        message=f"{vm.name} is {vm.get_state_display().lower()}.",
        log_line=f"state now {vm.state}",
    )


def set_vm_autostart(vm: VirtualMachine, enabled: bool, *, actor: Actor) -> VirtualMachine:
    """Start (or not) the VM when its host boots."""
    with vm_change(vm, actor, "vm.autostart", "change autostart of", right=POWER) as change:
        with change.claim("changing autostart"), change.on_host():
            info = hypervisor.set_autostart(vm.host.uri, str(vm.pk), enabled)
        return change.done(info, "on" if enabled else "off")


def assign_vm(
    vm: VirtualMachine,
    project: Project,
    *,
    actor: Actor,
    owner: Any = None,
) -> VirtualMachine:
    """Move a VM to another project (admins), e.g. out of 'unassigned'."""
    if not is_admin(actor.user):
        raise PermissionDenied("Only administrators can move VMs between projects.")
    with transaction.atomic():
        if rows.lock(vm) is None:
            raise GoneError(f"{vm.name} was deleted meanwhile; nothing was moved.")
        old = vm.project
        vm.project = project
        if owner is not None:
            vm.owner = owner
        vm.save(update_fields=["project", "owner"])
        audit.record(
            actor,
            "vm.assign",
            vm,
            detail=f"{old} -> {project}",
            project=project,
        )
    return vm


def delete_vm(
    vm: VirtualMachine,
    *,
    actor: Actor,
    remove_disks: Iterable[str] = (),
) -> Job | None:
    """Undefine the VM (stopping it), removing the chosen disks; a missing VM just leaves the list."""
    from vms.tasks import vm_delete_task  # vms.tasks imports this module

    with vm_job(vm, actor, "vm.delete", "delete", right=ALLOCATE) as request:
        paths = _paths_to_remove(vm, remove_disks)
        if vm.state == VMState.MISSING:
            _forget_missing(vm, actor)
            return None
        request.ready("there is nothing to delete")
        return request.queue(
            JobKind.VM_DELETE,
            vm_delete_task,
            {"remove_paths": paths},
            f"remove {paths or 'no disks'}",
        )


def _paths_to_remove(vm: VirtualMachine, targets: Iterable[str]) -> list[str]:
    """The files of the disks named by targets (vda, ...), each a disk vm has."""
    wanted = sorted(set(targets))
    known = {d["target"] for d in vm.disks}
    if unknown := [t for t in wanted if t not in known]:
        raise ServiceError(
            f"{vm.name} has no disk {', '.join(unknown)}; its disks are {', '.join(sorted(known)) or 'none'}.",
            field="remove_disks",
        )
    return [d["source"] for d in vm.disks if d["target"] in wanted and d["source"]]


def _forget_missing(vm: VirtualMachine, actor: Actor) -> None:
    """A VM missing from its host removed from the list (no job: there is nothing to undo)."""
    locks.refuse_if_busy(f"vm:{vm.pk}", vm.name)
    with transaction.atomic():
        audit.record(actor, "vm.delete", vm, detail="missing VM removed from the list")
        vm.delete()


def run_delete_job(job: Job) -> None:
    """Undefine the domain and delete the chosen volumes; then drop the row."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host").filter(pk=spec["vm"]).first()
    if vm is None:
        return
    jobs.report(
        job.pk, progress=10, message=f"Removing {vm.name}", log_line="undefining the domain"
    )
    with on_vm_host(vm, failed=f"Could not delete {vm.name}"):
        removed = hypervisor.delete_domain(vm.host.uri, str(vm.pk), spec["remove_paths"])
    for path in removed:
        jobs.report(job.pk, log_line=f"deleted volume {path}")
    Volume.objects.filter(path__in=removed).delete()
    vm.delete()
    jobs.report(
        job.pk, progress=100, message=f"{spec['vm_name']} deleted; {len(removed)} disk(s) removed."
    )


def edit_xml(vm: VirtualMachine, xml: str, *, actor: Actor) -> VirtualMachine:
    """Replace the VM's definition with edited XML (admins); libvirt validates it first."""
    if not is_admin(actor.user):
        raise PermissionDenied("Only administrators can edit a VM's XML.")
    with vm_change(vm, actor, "vm.edit_xml", "edit the XML of", right=CONFIG_CPU_MEMORY) as change:
        with change.claim("editing its XML"):
            try:
                info = hypervisor.redefine_domain(vm.host.uri, str(vm.pk), xml)
            except hypervisor.HostUnavailable as exc:
                raise UnavailableError(f"{vm.host.name} cannot be reached: {exc}") from exc
            except (hypervisor.HypervisorError, ValueError) as exc:
                raise ServiceError(
                    f"libvirt refused the XML: {exc}. Nothing was changed.", field="xml"
                ) from exc
        with transaction.atomic():
            vm = change.done(info)
            vm.xml = hypervisor.domain_xml(vm.host.uri, str(vm.pk))
            vm.save(update_fields=["xml"])
        return vm


def definition_xml(vm: VirtualMachine, *, actor: Actor) -> str:
    """The VM's current definition, read from its host, for the XML editor (admins)."""
    if not is_admin(actor.user):
        raise PermissionDenied("Only administrators can edit a VM's XML.")
    with on_vm_host(vm):
        return hypervisor.domain_xml(vm.host.uri, str(vm.pk), inactive=True)


def set_vnc_password(vm: VirtualMachine, password: str, *, actor: Actor) -> bool:
    """Set or clear (empty) the VM's VNC password; it is never stored by the panel or logged.
    A password does not get in the way of a running job: only other quick changes wait."""
    password = password.strip()
    with vm_change(
        vm,
        actor,
        "vm.vnc_password",
        "set the VNC password of",
        right=CONFIG_CPU_MEMORY,
        while_jobs_run=True,
    ) as change:
        if password and not (6 <= len(password) <= 8):
            raise ServiceError(
                "A VNC password has 6 to 8 characters (VNC uses only the first 8).",
                field="password",
            )
        with change.claim("setting the VNC password"), change.on_host():
            now = hypervisor.set_vnc_password(vm.host.uri, str(vm.pk), password or None)
        change.done(
            None, ("set" if password else "cleared") + ("" if now else ", from the next start")
        )
    return now
