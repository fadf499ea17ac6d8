"""Actions on virtual machines, and keeping the VM rows in step with the hosts.

Every action checks the actor's right on the VM, writes its audit row in the
same transaction, and either calls the hypervisor (bounded, answered at once)
or creates a Job whose Celery task does the work.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from panel import audit, events, hypervisor, jobs, locks, rows
from panel.choices import HostState, JobKind
from panel.exceptions import ConflictError, GoneError, ServiceError, UnavailableError
from panel.hostcalls import on_host
from panel.models import Host, Job, Project
from panel.permissions import CHANGE, DELETE, allowed, is_admin

from .choices import VMState
from .models import VirtualMachine

UNASSIGNED = "unassigned"
# Above this many changes in one reconcile, browsers get one host event instead of one per VM.
BULK_EVENT_THRESHOLD = 200

# Quick verbs answered at once; the rest run as jobs.
DIRECT_ACTIONS = {"start", "force-off", "reboot", "reset", "suspend", "resume"}
JOB_ACTIONS = {"shutdown", "save", "restore"}
ACTIONS = DIRECT_ACTIONS | JOB_ACTIONS


def unassigned_project() -> Project:
    """Where domains defined outside the panel land until an admin assigns them."""
    project, _ = Project.objects.get_or_create(
        name=UNASSIGNED,
        defaults={"description": "VMs found on hosts, not created through the panel."},
    )
    return project


VM_SYNC_FIELDS = (
    "name",
    "state",
    "domain_type",
    "firmware",
    "vcpus",
    "memory_mib",
    "max_vcpus",
    "max_memory_mib",
    "autostart",
    "persistent",
    "disks",
    "nics",
    "graphics",
)


def _fields(info: hypervisor.DomainInfo) -> dict[str, object]:
    return {
        "name": info.name,
        "state": info.state,
        "domain_type": info.domain_type,
        "firmware": info.firmware,
        "vcpus": info.vcpus,
        "memory_mib": info.memory_mib,
        "max_vcpus": info.max_vcpus,
        "max_memory_mib": info.max_memory_mib,
        "autostart": info.autostart,
        "persistent": info.persistent,
        "disks": [dataclasses.asdict(d) for d in info.disks],
        "nics": [dataclasses.asdict(n) for n in info.nics],
        "graphics": [dataclasses.asdict(g) for g in info.graphics],
    }


def serialize_vm(vm: VirtualMachine) -> dict[str, object]:
    """The VM as pushed to browsers watching it."""
    return {
        "id": str(vm.pk),
        "name": vm.name,
        "host": vm.host_id,
        "host_name": vm.host.name,
        "project": vm.project_id,
        "state": vm.state,
        "state_display": vm.get_state_display(),
        "vcpus": vm.vcpus,
        "memory_mib": vm.memory_mib,
        "ips": vm.ips,
        "details_at": vm.details.get("read_at", ""),
    }


def vm_messages(vm: VirtualMachine) -> list[tuple[str, events.VMUpdate]]:
    payload: events.VMUpdate = {"type": "vm.update", "vm": serialize_vm(vm)}
    return [
        (events.vm_group(str(vm.pk)), payload),
        (events.vm_row_group(str(vm.pk)), payload),
        (events.host_group(vm.host_id), payload),
    ]


def _publish(vm: VirtualMachine) -> None:
    events.publish_many(vm_messages(vm))


def _left_behind(vm: VirtualMachine, host: Host, info: hypervisor.DomainInfo) -> bool:
    """A shut-off definition on host of a VM the row says runs on another host: what a
    migration without undefine-source leaves. The row stays with the running copy."""
    return (
        vm.host_id != host.pk
        and info.state == VMState.SHUTOFF
        and vm.state in (VMState.RUNNING, VMState.PAUSED)
    )


def sync_domain(host: Host, info: hypervisor.DomainInfo) -> VirtualMachine:
    """Create or update one VM row from what the host reports."""
    with transaction.atomic():
        # The host's row first: two processes syncing one new domain (the watcher and a
        # job) take turns, so the second finds the row the first made instead of making
        # it twice; and the host cannot be removed before this commits.
        if rows.lock(host) is None:
            raise GoneError(f"{host.name} was removed from the panel meanwhile.")
        # Locked too: a delete job removing this row meanwhile waits, or has already gone.
        vm = VirtualMachine.objects.select_for_update().filter(pk=info.uuid).first()
        if vm is not None and _left_behind(vm, host, info):
            return vm
        new = vm is None
        if new:
            vm = VirtualMachine(pk=info.uuid, project=unassigned_project())
        fields = _fields(info)
        # Pages hear of the VM when something they show changed, not at every read.
        changed = (
            new or vm.host_id != host.pk or any(getattr(vm, k) != v for k, v in fields.items())
        )
        for key, value in fields.items():
            setattr(vm, key, value)
        vm.host = host
        vm.synced = timezone.now()
        vm.save(force_insert=new)
        if changed:
            _publish(vm)
    return vm


def mark_missing(host: Host, uuid: str) -> None:
    """A domain the host no longer has: its row stays, with its history, as missing."""
    with transaction.atomic():
        # Locked: if a delete job removed the row meanwhile there is nothing to mark.
        vm = VirtualMachine.objects.select_for_update().filter(host=host, pk=uuid).first()
        if vm is None or vm.state == VMState.MISSING:
            return
        vm.state = VMState.MISSING
        vm.save(update_fields=["state"])
        _publish(vm)


def sync_domains(host: Host, domains: Iterable[hypervisor.DomainInfo]) -> dict[str, int]:
    """Make the host's VM rows match the domains it reports, in bulk; return counts."""
    domains = list(domains)
    now = timezone.now()
    created: list[VirtualMachine] = []
    changed: list[VirtualMachine] = []
    changed_fields: list[tuple[VirtualMachine, tuple[str, ...]]] = []
    with transaction.atomic():
        # The host's row first, as sync_domain takes it: the rows read below stay as
        # they are until this commits (no watcher adds one of these domains meanwhile).
        if rows.lock(host) is None:
            raise GoneError(f"{host.name} was removed from the panel meanwhile.")
        existing = {
            str(vm.pk): vm for vm in VirtualMachine.objects.filter(pk__in=[d.uuid for d in domains])
        }
        known = set(
            VirtualMachine.objects.filter(host=host)
            .exclude(state=VMState.MISSING)
            .values_list("pk", flat=True)
        )
        project = unassigned_project() if any(d.uuid not in existing for d in domains) else None
        for info in domains:
            fields = _fields(info)
            vm = existing.get(info.uuid)
            if vm is None:
                created.append(
                    VirtualMachine(pk=info.uuid, host=host, project=project, synced=now, **fields)
                )
                continue
            if _left_behind(vm, host, info):
                continue
            diff = tuple(k for k, v in fields.items() if getattr(vm, k) != v)
            if vm.host_id != host.pk:
                diff = (*diff, "host")
            if not diff:
                continue
            for key, value in fields.items():
                setattr(vm, key, value)
            vm.host = host
            vm.synced = now
            changed.append(vm)
            changed_fields.append((vm, diff))
        VirtualMachine.objects.bulk_create(created, batch_size=500)
        # Rows grouped by which fields changed: an UPDATE writes only those.
        by_fields: dict[tuple[str, ...], list[VirtualMachine]] = {}
        for vm, fields_changed in changed_fields:
            by_fields.setdefault(fields_changed, []).append(vm)
        for names, batch in by_fields.items():
            VirtualMachine.objects.bulk_update(batch, [*names, "synced"], batch_size=500)
        seen = {d.uuid for d in domains}
        gone = [pk for pk in known if str(pk) not in seen]
        VirtualMachine.objects.filter(pk__in=gone).update(state=VMState.MISSING)
        touched = len(created) + len(changed) + len(gone)
        if touched > BULK_EVENT_THRESHOLD:
            events.publish(
                events.host_group(host.pk),
                {
                    "type": "host.update",
                    "host": {
                        "id": host.pk,
                        "name": host.name,
                        "state": host.state,
                        "inventory_changed": touched,
                    },
                },
            )
        else:
            events.publish_many(
                [
                    message
                    for vm in [
                        *created,
                        *changed,
                        *VirtualMachine.objects.filter(pk__in=gone).select_related("host"),
                    ]
                    for message in vm_messages(vm)
                ]
            )
    return {
        "domains": len(domains),
        "created": len(created),
        "changed": len(changed),
        "missing": len(gone),
    }


# --- actions ---


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
    from django.core.exceptions import PermissionDenied

    if not allowed(actor, vm, action):
        raise PermissionDenied(f"Your role does not allow you to {verb} {vm.name}.")


def apply_info(vm: VirtualMachine, info: hypervisor.DomainInfo | None) -> VirtualMachine:
    if info is not None:
        return sync_domain(vm.host, info)
    try:
        return sync_domain(vm.host, hypervisor.get_domain(vm.host.uri, str(vm.pk)))
    except hypervisor.NotFound:
        mark_missing(vm.host, str(vm.pk))
        return _still_there(vm)


def _still_there(vm: VirtualMachine) -> VirtualMachine:
    """The VM's row read again; GoneError when it was deleted meanwhile."""
    row = VirtualMachine.objects.select_related("host").filter(pk=vm.pk).first()
    if row is None:
        raise GoneError(f"{vm.name} was deleted meanwhile.")
    return row


def reread(vm: VirtualMachine) -> VirtualMachine:
    """The VM's row read again from its host (marked missing when its domain is gone)."""
    return apply_info(vm, None)


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
    actor: Any,
    mode: str = "acpi",
    timeout: int = 120,
    source_ip: str | None = None,
) -> VirtualMachine | Job:
    """Run a lifecycle verb: quick ones return the updated VM, long ones a queued Job."""
    if action not in ACTIONS:
        raise ServiceError(f"Unknown action '{action}': use one of {', '.join(sorted(ACTIONS))}.")
    if mode not in ("acpi", "agent"):
        raise ServiceError(f"Unknown mode '{mode}': use acpi or agent.", field="mode")
    require_right(actor, vm, CHANGE, action.replace("-", " "))
    with audit.refusals_recorded(
        actor, f"vm.{action}", vm, project=vm.project, source_ip=source_ip
    ):
        if vm.state == VMState.MISSING:
            raise ConflictError(
                f"{vm.name} is missing from its host: there is nothing to {action}."
            )
        locks.refuse_if_busy(f"vm:{vm.pk}", vm.name)
        if action in JOB_ACTIONS:
            if vm.host.state == HostState.DOWN:
                # A job would only fail later: say so now.
                raise UnavailableError(
                    f"{vm.host.name} is down ({vm.host.last_error or 'libvirtd does not answer'}): "
                    f"{action} {vm.name} once the host is back up."
                )
            return _queue(vm, action, actor=actor, mode=mode, timeout=timeout, source_ip=source_ip)
        if action in ("start", "restore"):
            from storage.services import check_vm_disks

            # qemu opens the disks now: each as its recorded format, its header checked.
            check_vm_disks(vm.host, vm.disks, "booted")
        # One action at a time on a VM: the claim is written before the host is touched,
        # so a request that cannot write (busy VM, locked database) changes nothing.
        with _claimed(vm, action, actor):
            with on_vm_host(vm):
                info = _direct(vm, action, mode)
            with transaction.atomic():
                vm = apply_info(vm, info)
                audit.record(
                    actor,
                    f"vm.{action}",
                    vm,
                    project=vm.project,
                    source_ip=source_ip,
                    detail=f"mode {mode}" if action == "reboot" else "",
                )
    return vm


def _claimed(vm: VirtualMachine, what: str, actor: Any, *, jobs_too: bool = True) -> Any:
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


def _queue(
    vm: VirtualMachine, action: str, *, actor: Any, mode: str, timeout: int, source_ip: str | None
) -> Job:
    from .tasks import vm_action_task, vm_save_restore_task

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


def undo_abandoned_clone(job: Job) -> str:
    """A VM clone whose worker died: kept if the clone was defined, the volumes it was
    copying removed otherwise; what to tell the user."""
    from storage.services import remove_made_volumes

    spec = job.result
    vm = VirtualMachine.objects.select_related("host").filter(pk=spec.get("vm")).first()
    if vm is None:
        return "its VM is no longer in the panel"
    try:
        removed, _kept = remove_made_volumes(vm.host, spec.get(jobs.MADE) or [])
        named = [d for d in hypervisor.list_domains(vm.host.uri) if d.name == spec["name"]]
    except (ServiceError, hypervisor.HypervisorError):
        return f"check {vm.host.name}: it could not be read"
    if named:
        with transaction.atomic():
            clone = sync_domain(vm.host, named[0])
            clone.project = vm.project
            clone.owner = job.user
            clone.save(update_fields=["project", "owner"])
        return f"the clone had been made: {named[0].name} is on {vm.host.name}"
    if not removed:
        return f"no clone of {vm.name} was made"
    return f"the unfinished clone's disks were removed: {', '.join(removed)}"


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
    vm = apply_info(vm, None)
    jobs.report(
        job.pk,
        progress=100,
        message=f"{vm.name} is {vm.get_state_display().lower()}.",
        log_line=f"state now {vm.state}",
    )


def set_vm_autostart(
    vm: VirtualMachine, enabled: bool, *, actor: Any, source_ip: str | None = None
) -> VirtualMachine:
    """Start (or not) the VM when its host boots."""
    require_right(actor, vm, CHANGE, "change autostart of")
    with audit.refusals_recorded(
        actor, "vm.autostart", vm, project=vm.project, source_ip=source_ip
    ):
        with _claimed(vm, "changing autostart", actor):
            with on_vm_host(vm):
                info = hypervisor.set_autostart(vm.host.uri, str(vm.pk), enabled)
            with transaction.atomic():
                vm = apply_info(vm, info)
                audit.record(
                    actor,
                    "vm.autostart",
                    vm,
                    detail="on" if enabled else "off",
                    project=vm.project,
                    source_ip=source_ip,
                )
    return vm


def assign_vm(
    vm: VirtualMachine,
    project: Project,
    *,
    actor: Any,
    owner: Any = None,
    source_ip: str | None = None,
) -> VirtualMachine:
    """Move a VM to another project (admins), e.g. out of 'unassigned'."""
    from django.core.exceptions import PermissionDenied

    if not is_admin(actor):
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
            source_ip=source_ip,
        )
    return vm


def delete_vm(
    vm: VirtualMachine,
    *,
    actor: Any,
    remove_disks: Iterable[str] = (),
    source_ip: str | None = None,
) -> Job | None:
    """Undefine the VM (stopping it), removing the chosen disks; a missing VM just leaves the list."""
    from .tasks import vm_delete_task

    require_right(actor, vm, DELETE, "delete")
    targets = sorted(set(remove_disks))
    known = {d["target"] for d in vm.disks}
    if unknown := [t for t in targets if t not in known]:
        raise ServiceError(
            f"{vm.name} has no disk {', '.join(unknown)}; its disks are {', '.join(sorted(known)) or 'none'}.",
            field="remove_disks",
        )
    with audit.refusals_recorded(actor, "vm.delete", vm, project=vm.project, source_ip=source_ip):
        locks.refuse_if_busy(f"vm:{vm.pk}", vm.name)
        with transaction.atomic():
            if vm.state == VMState.MISSING:
                audit.record(
                    actor,
                    "vm.delete",
                    vm,
                    detail="missing VM removed from the list",
                    project=vm.project,
                    source_ip=source_ip,
                )
                vm.delete()
                return None
            paths = [d["source"] for d in vm.disks if d["target"] in targets and d["source"]]
            job = queue_vm_job(
                vm,
                JobKind.VM_DELETE,
                vm_delete_task,
                {"remove_paths": paths},
                actor=actor,
                action="vm.delete",
                detail=f"remove {paths or 'no disks'}",
                source_ip=source_ip,
            )
    return job


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
    from storage.models import Volume

    Volume.objects.filter(path__in=removed).delete()
    vm.delete()
    jobs.report(
        job.pk, progress=100, message=f"{spec['vm_name']} deleted; {len(removed)} disk(s) removed."
    )


def refresh_details(vm: VirtualMachine) -> VirtualMachine:
    """Read the VM's details from its host (addresses, agent, block sizes) into the row."""
    try:
        details = hypervisor.domain_details(vm.host.uri, str(vm.pk))
    except hypervisor.NotFound:
        mark_missing(vm.host, str(vm.pk))
        return _still_there(vm)
    except hypervisor.HostUnavailable as exc:
        raise UnavailableError(
            f"{vm.host.name} cannot be reached: {exc}. Try again once the host is back."
        ) from exc
    with transaction.atomic():
        vm = sync_domain(vm.host, details.info)
        ips_before = vm.ips
        vm.ips = [dataclasses.asdict(a) for a in details.addresses]
        vm.details = {
            "id": details.id,
            "os_type": details.os_type,
            "state_reason": details.state_reason,
            "cpu_time_s": round(details.cpu_time_ns / 1e9, 1),
            "max_memory_mib": details.max_memory_mib,
            "has_managed_save": details.has_managed_save,
            "blocks": {b.target: dataclasses.asdict(b) for b in details.blocks},
            "vnet_devices": details.vnet_devices,
            "agent": details.agent,
            "read_at": timezone.now().isoformat(),
        }
        vm.xml = details.xml
        vm.save(update_fields=["ips", "details", "xml"])
        # The VM's page shows the details; host pages and VM lists only its state (told
        # by sync_domain when it changed) and addresses: fresh details alone, read at each
        # page view, are not theirs to hear of.
        if vm.ips != ips_before:
            _publish(vm)
        else:
            payload: events.VMUpdate = {"type": "vm.update", "vm": serialize_vm(vm)}
            events.publish(events.vm_group(str(vm.pk)), payload)
    return vm


def edit_xml(
    vm: VirtualMachine, xml: str, *, actor: Any, source_ip: str | None = None
) -> VirtualMachine:
    """Replace the VM's definition with edited XML (admins); libvirt validates it first."""
    from django.core.exceptions import PermissionDenied

    if not is_admin(actor):
        raise PermissionDenied("Only administrators can edit a VM's XML.")
    with audit.refusals_recorded(actor, "vm.edit_xml", vm, project=vm.project, source_ip=source_ip):
        with _claimed(vm, "editing its XML", actor):
            try:
                info = hypervisor.redefine_domain(vm.host.uri, str(vm.pk), xml)
            except hypervisor.HostUnavailable as exc:
                raise UnavailableError(f"{vm.host.name} cannot be reached: {exc}") from exc
            except (hypervisor.HypervisorError, ValueError) as exc:
                raise ServiceError(
                    f"libvirt refused the XML: {exc}. Nothing was changed.", field="xml"
                ) from exc
            with transaction.atomic():
                vm = apply_info(vm, info)
                vm.xml = hypervisor.domain_xml(vm.host.uri, str(vm.pk))
                vm.save(update_fields=["xml"])
                audit.record(actor, "vm.edit_xml", vm, project=vm.project, source_ip=source_ip)
    return vm


def definition_xml(vm: VirtualMachine, *, actor: Any) -> str:
    """The VM's current definition, read from its host, for the XML editor (admins)."""
    from django.core.exceptions import PermissionDenied

    if not is_admin(actor):
        raise PermissionDenied("Only administrators can edit a VM's XML.")
    with on_vm_host(vm):
        return hypervisor.domain_xml(vm.host.uri, str(vm.pk), inactive=True)


def set_vnc_password(
    vm: VirtualMachine, password: str, *, actor: Any, source_ip: str | None = None
) -> bool:
    """Set or clear (empty) the VM's VNC password; it is never stored by the panel or logged."""
    require_right(actor, vm, CHANGE, "set the VNC password of")
    password = password.strip()
    with audit.refusals_recorded(
        actor, "vm.vnc_password", vm, project=vm.project, source_ip=source_ip
    ):
        if password and not (6 <= len(password) <= 8):
            raise ServiceError(
                "A VNC password has 6 to 8 characters (VNC uses only the first 8).",
                field="password",
            )
        # A password does not get in the way of a running job: only other quick actions wait.
        with _claimed(vm, "setting the VNC password", actor, jobs_too=False):
            with on_vm_host(vm):
                now = hypervisor.set_vnc_password(vm.host.uri, str(vm.pk), password or None)
            with transaction.atomic():
                audit.record(
                    actor,
                    "vm.vnc_password",
                    vm,
                    detail=("set" if password else "cleared")
                    + ("" if now else ", from the next start"),
                    project=vm.project,
                    source_ip=source_ip,
                )
    return now


def clone_vm(
    vm: VirtualMachine,
    name: str,
    *,
    linked: bool,
    actor: Any,
    source_ip: str | None = None,
) -> Job:
    """Queue a clone of a shut-off VM into the same project, owned by the actor."""
    from panel import quotas

    from .tasks import vm_clone_task

    require_right(actor, vm, CHANGE, "clone")
    name = (name or "").strip()
    with audit.refusals_recorded(actor, "vm.clone", vm, project=vm.project, source_ip=source_ip):
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
            raise ServiceError(
                "Name the clone with 1 to 64 letters, digits, '-', '_' or '.'.", field="name"
            )
        if vm.state != VMState.SHUTOFF:
            raise ConflictError(f"{vm.name} is {vm.state}: shut it down before cloning it.")
        if (
            VirtualMachine.objects.filter(host=vm.host, name=name)
            .exclude(state=VMState.MISSING)
            .exists()
        ):
            raise ServiceError(f"{vm.host.name} already has a VM named '{name}'.", field="name")
        locks.refuse_if_busy(f"vm:{vm.pk}", vm.name)
        with transaction.atomic():
            if vm.project is not None:
                disk_gib = -(
                    -sum(b.get("capacity", 0) for b in vm.details.get("blocks", {}).values())
                    // (1024**3)
                )
                quotas.reserve(
                    vm.project,
                    vms=1,
                    vcpus=max(vm.vcpus, vm.max_vcpus),
                    memory_mib=max(vm.memory_mib, vm.max_memory_mib),
                    disk_gib=0 if linked else disk_gib,
                )
            job = queue_vm_job(
                vm,
                JobKind.VM_CLONE,
                vm_clone_task,
                {"name": name, "linked": linked},
                actor=actor,
                action="vm.clone",
                detail=f"{'linked' if linked else 'full'} clone {name}",
                source_ip=source_ip,
            )
    return job


def _record_clone_disks(
    vm: VirtualMachine, info: hypervisor.DomainInfo, *, linked: bool, recorded: dict[str, Any]
) -> None:
    """The clone's new disk volumes recorded as made: a full copy standalone, a linked
    overlay on the source disk and its chain."""
    from storage import services as storage_services

    originals = {d.get("target"): d for d in vm.disks if d.get("device", "disk") == "disk"}
    for disk in info.disks:
        original = originals.get(disk.target)
        if disk.device != "disk" or not disk.source or original is None:
            continue
        if disk.source == original.get("source"):
            continue
        chain: list[dict[str, str]] = []
        if linked:
            below = recorded.get(original["source"], ())
            chain = [{"path": original["source"], "format": original.get("format") or "raw"}]
            chain += [{"path": b.path, "format": b.format} for b in below]
        storage_services.record_made(vm.host, disk.source, disk.format or "raw", chain)


def run_clone_job(job: Job) -> None:
    """Copy or overlay the disks and define the clone; the new row joins the source's project."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host").filter(pk=spec["vm"]).first()
    if vm is None:
        raise ServiceError("The VM to clone was removed.")
    kind = "linked" if spec["linked"] else "full"
    jobs.report(
        job.pk,
        progress=10,
        message=f"Making a {kind} clone of {vm.name}",
        log_line=f"{kind} clone {spec['name']} started",
    )
    from storage import services as storage_services

    sources = [d["source"] for d in vm.disks if d.get("source")]
    recorded = storage_services.recorded_chains(vm.host, sources)
    with on_vm_host(vm, failed=f"Cloning {vm.name} failed and was undone"):
        info = hypervisor.clone_domain(
            vm.host.uri,
            str(vm.pk),
            spec["name"],
            linked=spec["linked"],
            # Written down before each copy starts: if this worker dies, its successor
            # removes them (undo_abandoned_clone).
            on_volume=jobs.recorder(job.pk),
            recorded=recorded,
        )
    _record_clone_disks(vm, info, linked=spec["linked"], recorded=recorded)
    with transaction.atomic():
        clone = sync_domain(vm.host, info)
        clone.project = vm.project
        clone.owner = job.user
        clone.template = vm.template  # its limits follow the copy
        clone.save(update_fields=["project", "owner", "template"])
    for disk in info.disks:
        jobs.report(job.pk, log_line=f"disk {disk.target}: {disk.source}")
    job.refresh_from_db(fields=["result"])
    job.result = {**job.result, "clone": info.uuid}
    job.save(update_fields=["result"])
    jobs.report(job.pk, progress=100, message=f"{info.name} created ({kind} clone of {vm.name}).")
