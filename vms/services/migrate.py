"""Migrating a VM to another host: the pre-check, the job, and the inventory following it.

The request checks permission (change on the VM, the target host visible), parses
the options and runs the pre-check on both hosts; any failing check refuses the
migration with its reason and nothing changes. The job re-checks, migrates with
progress from libvirt's job statistics, aborts when cancelled (the VM keeps running
on the source and the target keeps nothing), and on success moves the VM's row to
the target host.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.http import Http404

from panel import audit, events, hypervisor, jobs
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError, UnavailableError
from panel.models import Host, Job
from panel.permissions import MIGRATE, restrict
from storage.models import StoragePool, Volume
from storage.services import refresh_pool_row
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services import migrate_hosts, placement
from vms.services.common import apply_info, on_vm_host, vm_job
from vms.services.sync import mark_missing, sync_domain, vm_messages

log = logging.getLogger(__name__)

BOOL_FIELDS = ("live", "persistent", "undefine_source", "auto_converge", "post_copy", "tls")
COPY_CHOICES = {
    False: "",
    True: "all",
    "": "",
    "none": "",
    "all": "all",
    "incremental": "incremental",
}
MAX_BANDWIDTH_MIB = 100_000
# Progress writes at most this often: each one is a database write and a websocket push.
REPORT_EVERY = 0.5


@dataclass(frozen=True)
class MigrationRequest:
    """A parsed migration request: where to, and how."""

    target: Host
    options: hypervisor.MigrationOptions
    target_pool_id: int | None = None


def _bool(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ServiceError(f"{name} must be true or false.", field=name)


def _int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise ServiceError(f"{name} must be a whole number.", field=name)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ServiceError(f"{name} must be a whole number.", field=name) from None


def _copy_storage(value: Any) -> str:
    """copy_storage as asked (false, true, 'all', 'incremental', or their form values),
    as MigrationOptions takes it."""
    if isinstance(value, str):
        value = value.strip().lower()
        value = {"true": True, "false": False, "1": True, "0": False}.get(value, value)
    if not isinstance(value, bool | str) or value not in COPY_CHOICES:
        raise ServiceError(
            "copy_storage must be false, true (all), 'all' or 'incremental'.",
            field="copy_storage",
        )
    return COPY_CHOICES[value]


@dataclass(frozen=True)
class MigrationAsk:
    """A migration as asked (the API's JSON, the dialog's form), its shape checked by
    parse(): the target host and pool by id, and how to migrate. live None: live when
    the VM runs."""

    target_host: int
    target_pool: int | None = None
    copy_storage: str = ""
    bandwidth_mib: int = 0
    live: bool | None = None
    persistent: bool = True
    undefine_source: bool = True
    auto_converge: bool = False
    post_copy: bool = False
    tls: bool = False

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> MigrationAsk:
        target_host = _int(data, "target_host")
        if target_host is None:
            raise ServiceError(
                "target_host: give the id of the host to migrate to (see GET /api/v1/hosts/).",
                field="target_host",
            )
        copy = _copy_storage(data.get("copy_storage", False))
        flags = {name: _bool(data, name, getattr(cls, name)) for name in BOOL_FIELDS[1:]}
        bandwidth = _int(data, "bandwidth_mib") or 0
        if not 0 <= bandwidth <= MAX_BANDWIDTH_MIB:
            raise ServiceError(
                f"bandwidth_mib is in MiB/s, from 0 (no limit) to {MAX_BANDWIDTH_MIB}.",
                field="bandwidth_mib",
            )
        return cls(
            target_host=target_host,
            target_pool=_int(data, "target_pool"),
            copy_storage=copy,
            bandwidth_mib=bandwidth,
            live=_bool(data, "live", False) if "live" in data else None,
            **flags,
        )


def resolve(vm: VirtualMachine, ask: MigrationAsk, *, actor: Actor) -> MigrationRequest:
    """The target host (visible to actor: 404 otherwise, not vm's own), the pool there
    and the options of ask."""
    target = restrict(Host.objects.all(), actor.user).filter(pk=ask.target_host).first()
    if target is None:
        raise Http404("No such host.")
    if target.pk == vm.host_id:
        raise ServiceError(
            f"{vm.name} already runs on {target.name}: choose another host.", field="target_host"
        )
    placement.refuse_maintenance(target, "migrate to")
    pool_name = ""
    if ask.target_pool is not None:
        pool = (
            restrict(StoragePool.objects.all(), actor.user)
            .filter(pk=ask.target_pool, host=target)
            .first()
        )
        if pool is None:
            raise ServiceError(
                f"target_pool: choose a pool of {target.name} (see GET /api/v1/pools/?host={target.pk}).",
                field="target_pool",
            )
        pool_name = pool.name
    options = hypervisor.MigrationOptions(
        copy_storage=ask.copy_storage,
        target_pool=pool_name,
        bandwidth_mib=ask.bandwidth_mib,
        live=vm.state == VMState.RUNNING if ask.live is None else ask.live,
        persistent=ask.persistent,
        undefine_source=ask.undefine_source,
        auto_converge=ask.auto_converge,
        post_copy=ask.post_copy,
        tls=ask.tls,
    )
    return MigrationRequest(target=target, options=options, target_pool_id=ask.target_pool)


def precheck(
    vm: VirtualMachine, target: Host, options: hypervisor.MigrationOptions
) -> list[hypervisor.Check]:
    """Every condition of migrating vm to target with options, read from both hosts."""
    options = migrate_hosts.between(options, vm.host, target)
    with on_vm_host(vm, failed=f"Checking {vm.name}"):
        return list(
            hypervisor.migration_checks(
                vm.host.uri,
                target.uri,
                str(vm.pk),
                options,
                reserved_bytes=target.memory_reserved or None,
            )
        )


def refusal(checks: list[hypervisor.Check]) -> str:
    """The reasons of the failing checks, one sentence each; empty when all pass."""
    return " ".join(f"{c.name}: {c.detail}" for c in checks if c.status == "fail")


def target_checks(vm: VirtualMachine, *, actor: Actor) -> list[tuple[Host, list[hypervisor.Check]]]:
    """For the dialog: each host actor sees, other than vm's, with its pre-check for the
    default options (live if running). A disk needing storage copy is a warning here: the
    dialog offers that option."""
    options = hypervisor.MigrationOptions(live=vm.state == VMState.RUNNING)
    result = []
    for host in restrict(Host.objects.all(), actor.user).exclude(pk=vm.host_id).order_by("name"):
        try:
            checks = precheck(vm, host, options)
        except ServiceError as exc:
            checks = [hypervisor.Check("source host", "fail", exc.message)]
        checks = [
            hypervisor.Check(c.name, "warn", c.detail)
            if c.status == "fail" and hypervisor.NEEDS_COPY in c.detail
            else c
            for c in checks
        ]
        result.append((host, checks))
    return result


def migrate_vm(vm: VirtualMachine, ask: MigrationAsk, *, actor: Actor) -> Job:
    """Queue the migration of vm after its pre-check; refused (409) with every reason."""
    from vms.tasks import vm_migrate_task  # vms.tasks imports this module

    with vm_job(vm, actor, "vm.migrate", "migrate", right=MIGRATE) as job_request:
        request = resolve(vm, ask, actor=actor)
        job_request.ready("there is nothing to migrate")
        checks = precheck(vm, request.target, request.options)
        if reasons := refusal(checks):
            raise ConflictError(
                f"{vm.name} cannot migrate to {request.target.name}. {reasons} Nothing was changed."
            )
        options = request.options
        mode = "live" if options.live else "offline"
        if options.copy_storage:
            mode += f", {options.copy_storage} storage copied to {options.target_pool}"
        return job_request.queue(
            JobKind.VM_MIGRATE,
            vm_migrate_task,
            {
                "source_host": vm.host_id,
                "target_host": request.target.pk,
                "target_pool": request.target_pool_id,
                "options": asdict(options),
            },
            f"{vm.host.name} -> {request.target.name} ({mode})",
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def run_migrate_job(job: Job) -> None:
    """The body of a migration job: re-check, migrate with progress, follow the VM."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host", "project").filter(pk=spec["vm"]).first()
    if vm is None:
        raise ServiceError("The VM of this job was removed.")
    target = Host.objects.filter(pk=spec["target_host"]).first()
    if target is None:
        raise ServiceError("The target host was removed from the panel; nothing was changed.")
    source = vm.host
    if source.pk == target.pk:
        raise ServiceError(f"{vm.name} already runs on {target.name}.")
    asked = {k: v for k, v in spec["options"].items() if k != "shared_paths"}
    options = migrate_hosts.between(hypervisor.MigrationOptions(**asked), source, target)
    jobs.report(
        job.pk,
        progress=1,
        message=f"Checking {target.name}",
        log_line=f"pre-check of {source.name} -> {target.name}",
    )
    checks = precheck(vm, target, options)
    if reasons := refusal(checks):
        raise ConflictError(
            f"{vm.name} cannot migrate to {target.name}. {reasons} Nothing was changed."
        )
    jobs.report(
        job.pk,
        progress=3,
        message=f"Migrating {vm.name} to {target.name}",
        log_line=f"migration started ({'live' if options.live else 'offline'}"
        + (f", {options.copy_storage} storage copy" if options.copy_storage else "")
        + (f", {options.bandwidth_mib} MiB/s" if options.bandwidth_mib else "")
        + (", over TLS" if options.tls else "")
        + f") to {options.migration_uri or 'the target default'}",
    )
    result = _migrate(job, vm, target, options)
    _follow(job, vm, source, target, result)


def _progress_reporter(job: Job) -> Callable[[hypervisor.MigrationProgress], None]:
    """What the migration calls with its progress: reported at most every REPORT_EVERY
    seconds, a cancel noticed between reports."""
    last = [0.0]

    def progress(p: hypervisor.MigrationProgress) -> None:
        now = time.monotonic()
        if now - last[0] < REPORT_EVERY:
            # Still notice a cancel between writes.
            if Job.objects.filter(pk=job.pk, cancel_requested=True).exists():
                raise jobs.JobCancelled()
            return
        last[0] = now
        line = None
        if p.disk_total and p.disk_remaining:
            line = f"disks {_mib(p.disk_processed)} of {_mib(p.disk_total)}"
        jobs.report(
            job.pk,
            progress=3 + p.percent * 94 // 100,
            message=f"{_mib(p.data_processed)} sent, {_mib(p.data_remaining)} remaining"
            + (f" (pass {p.memory_iteration})" if p.memory_iteration else ""),
            log_line=line,
        )

    return progress


def _migrate(
    job: Job, vm: VirtualMachine, target: Host, options: hypervisor.MigrationOptions
) -> hypervisor.MigrationResult:
    """The migration itself; after a cancel or a failure, the VM's row put right."""
    source = vm.host
    try:
        return hypervisor.migrate_domain(
            source.uri,
            target.uri,
            str(vm.pk),
            options,
            _progress_reporter(job),
            remove_source_disks=options.undefine_source,
            # Written down before any byte is copied: if this worker dies, its successor
            # removes them (undo_abandoned).
            on_target_volume=jobs.recorder(job.pk),
        )
    except jobs.JobCancelled:
        _after_stop(job, vm, target, "cancelled")
        raise
    except hypervisor.HostUnavailable as exc:
        _after_stop(job, vm, target, "failed")
        raise UnavailableError(f"Migrating {vm.name} failed: {exc}") from exc
    except hypervisor.HypervisorError as exc:
        _after_stop(job, vm, target, "failed")
        raise ServiceError(
            f"Migrating {vm.name} to {target.name} failed: {exc}. It still runs on {source.name}."
        ) from exc


def _after_stop(job: Job, vm: VirtualMachine, target: Host, how: str) -> None:
    """After a cancel or failure: say where the VM is, and refresh its row from the source."""
    try:
        on_source, on_target = hypervisor.domain_location(vm.host.uri, target.uri, str(vm.pk))
    except hypervisor.HypervisorError as exc:
        jobs.append_log(job.pk, f"{how}; could not read where {vm.name} is: {exc}")
        return
    Job.objects.filter(pk=job.pk).update(
        result={**job.result, "after": {"source": on_source, "target": on_target}}
    )
    line = f"{how}: {vm.name} is {on_source} on {vm.host.name}, {on_target} on {target.name}"
    jobs.append_log(job.pk, line)
    with contextlib.suppress(hypervisor.HypervisorError):
        apply_info(vm, None)


def _follow(
    job: Job, vm: VirtualMachine, source: Host, target: Host, result: hypervisor.MigrationResult
) -> None:
    """The VM runs on the target: move its row there, its volumes' rows, audit, publish."""
    pool_id = job.result.get("target_pool")
    if result.copied and pool_id:
        pool = StoragePool.objects.filter(pk=pool_id).first()
        if pool is not None:
            try:
                refresh_pool_row(pool)
            except ServiceError as exc:
                log.warning("job %s: could not refresh pool %s: %s", job.pk, pool.name, exc.message)
    with transaction.atomic():
        vm = sync_domain(target, result.info)
        # Browsers watching the source host learn the VM left it.
        events.publish_many([(events.host_group(source.pk), m[1]) for m in vm_messages(vm)[:1]])
        carry_volume_owners(source, target, [(c.source, c.dest) for c in result.copied])
        Volume.objects.filter(pool__host=source, path__in=result.removed_source).delete()
        audit.record(
            Actor.of_job(job),
            "vm.migrate",
            vm,
            project=vm.project,
            detail=f"job #{job.pk}; now on {target.name} (from {source.name})",
        )
    for copy in result.copied:
        jobs.append_log(
            job.pk, f"disk {copy.target}: {copy.source} -> {copy.dest} on {target.name}"
        )
    for path in result.removed_source:
        jobs.append_log(job.pk, f"removed {path} on {source.name}")
    # A cancel that came after the VM had already moved cannot undo it: say so.
    if Job.objects.filter(pk=job.pk, cancel_requested=True).update(cancel_requested=False):
        jobs.append_log(job.pk, "cancel came too late: the migration had already finished")
    jobs.report(
        job.pk,
        progress=100,
        message=f"{vm.name} now runs on {target.name}.",
        log_line=f"{vm.name} is {result.info.state} on {target.name}",
    )


def undo_abandoned(job: Job) -> str:
    """A migration whose worker died: the VM left on exactly one host and its row there;
    what to tell the user."""
    vm = VirtualMachine.objects.select_related("host").filter(pk=job.result.get("vm")).first()
    target = Host.objects.filter(pk=job.result.get("target_host")).first()
    if vm is None or target is None:
        return "its VM or target host is no longer in the panel"
    source = vm.host
    if source.pk == target.pk:
        return f"{vm.name} runs on {target.name}"
    settled = hypervisor.settle_migration(source.uri, target.uri, str(vm.pk))
    for line in settled.done:
        jobs.append_log(job.pk, line)
    if settled.host == "target":
        assert settled.info is not None
        with transaction.atomic():
            sync_domain(target, settled.info)
            audit.record(
                Actor.of_job(job),
                "vm.migrate",
                vm,
                project=vm.project,
                detail=f"job #{job.pk}; now on {target.name} (from {source.name})",
            )
        return f"the migration had finished: {vm.name} runs on {target.name}"
    copies = [path for (path,) in job.result.get(jobs.MADE) or []]
    if settled.host == "source":
        assert settled.info is not None
        sync_domain(source, settled.info)
        # The disks it was copying: the source still has the originals.
        removed = hypervisor.delete_volumes(target.uri, copies)
        Volume.objects.filter(pool__host=target, path__in=removed).delete()
        for path in removed:
            jobs.append_log(job.pk, f"removed the incomplete copy {path} on {target.name}")
        return f"the migration was undone: {vm.name} is {settled.info.state} on {source.name}"
    mark_missing(source, str(vm.pk))
    kept = f"; the disk copies on {target.name} were kept: {', '.join(copies)}" if copies else ""
    return f"{vm.name} is on neither {source.name} nor {target.name}{kept}"


def carry_volume_owners(
    source: Host, target: Host, moves: list[tuple[str, str]], *, flattened: bool = False
) -> None:
    """The copied volumes' rows take the project and owner of the originals, so the
    project's disk quota and its members' rights follow the disks; and their recorded
    format (and chain, unless the copy is flattened), never libvirt's guess from the
    copy's content."""
    owners = {
        path: (project_id, owner_id, fmt, source_of_format, backing)
        for path, project_id, owner_id, fmt, source_of_format, backing in Volume.objects.filter(
            pool__host=source, path__in=[old for old, _new in moves]
        ).values_list("path", "project_id", "owner_id", "format", "format_source", "backing")
    }
    for old, new in moves:
        if old in owners:
            project_id, owner_id, fmt, source_of_format, backing = owners[old]
            Volume.objects.filter(pool__host=target, path=new).update(
                project_id=project_id,
                owner_id=owner_id,
                format=fmt,
                format_source=source_of_format,
                backing=[] if flattened else backing,
            )
