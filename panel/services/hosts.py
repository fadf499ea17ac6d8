"""Actions on hosts and jobs. Each checks permission, writes its audit row in the
same transaction as its change, and hands long work to Celery on commit."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from panel import audit, events, hypervisor, jobs, registry, rows, sshkeys
from panel.actors import Actor
from panel.choices import AuditResult, HostState, JobKind, JobState
from panel.exceptions import ConflictError, GoneError, ServiceError
from panel.models import Host, Job
from panel.notifications import facts
from panel.permissions import can_manage_hosts
from panel.services import host_keys, host_tls
from panel.services.host_migration import clean_migration_address

if TYPE_CHECKING:
    from panel.permissions import Person


log = logging.getLogger(__name__)


def serialize_host(host: Host) -> dict[str, Any]:
    """The host as pushed to browsers watching it (for_viewer() trims it per user)."""
    return {
        "id": host.pk,
        "name": host.name,
        "state": host.state,
        "domain_type": host.domain_type,
        "last_error": host.last_error,
    }


# Facts that say where a host is and how the panel logs in to it: admins only.
ADMIN_ONLY_FACTS = frozenset({"uri", "hostname", "host_uuid"})
UNREACHABLE = "The panel cannot reach this host; an admin sees why on the host's page."


def host_error_for(user: Person, error: str) -> str:
    """A host's last connection error as user may read it: the whole message names the
    host's URI and address, so only admins get it; others learn that it is unreachable."""
    if not error or can_manage_hosts(user):
        return error
    return UNREACHABLE


def host_facts_for(user: Person, facts: dict[str, Any]) -> dict[str, Any]:
    """The host's facts as user may read them (without its URI and hostname unless admin)."""
    if can_manage_hosts(user):
        return facts
    return {k: v for k, v in (facts or {}).items() if k not in ADMIN_ONLY_FACTS}


def for_viewer(user: Person, data: dict[str, Any]) -> dict[str, Any]:
    """serialize_host()'s dict as user may read it."""
    return {**data, "last_error": host_error_for(user, data.get("last_error", ""))}


def _deny(actor: Actor, action: str, target: object) -> PermissionDenied:
    # The 403 handlers of the pages and the API write the audit row for refusals.
    return PermissionDenied("Only administrators can manage hosts.")


def _facts_dict(report_or_facts: Any) -> dict[str, Any]:
    return dataclasses.asdict(report_or_facts)


def add_host(
    *,
    name: str,
    uri: str,
    actor: Actor,
    certificates: dict[str, Any] | None = None,
    ssh_fingerprint: str = "",
    migration_address: str = "",
) -> Host:
    """Register a host after proving the panel can talk to it; nothing is saved otherwise.
    A qemu+tls host comes with its certificates (ca_certificate, client_certificate,
    client_key: PEM), which the panel keeps once the host accepted them; a qemu+ssh
    host's key is pinned first: ssh_fingerprint is the one the admin confirmed."""
    if not can_manage_hosts(actor.user):
        raise _deny(actor, "host.add", name)
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the host a name.", field="name")
    migration_address = clean_migration_address(migration_address)
    try:
        uri = hypervisor.check_uri(uri)
    except hypervisor.InvalidURI as exc:
        raise ServiceError(str(exc), field="uri") from exc
    if Host.objects.filter(name=name).exists():
        raise ServiceError(
            f"A host named '{name}' already exists: pick another name.", field="name"
        )
    if Host.objects.filter(uri=uri).exists():
        raise ServiceError(f"The host at {uri} is already registered.", field="uri")
    key = host_keys.pin_for_add(uri, ssh_fingerprint) if hypervisor.is_ssh(uri) else None
    upload = host_tls.upload_for(uri, certificates)
    verified = host_tls.verify(uri, upload, actor=actor, target=uri) if upload else None
    try:
        facts = verified.facts if verified else hypervisor.host_facts(uri)
    except hypervisor.HypervisorError as exc:
        raise _unreachable(uri, exc, pinned=key is not None, actor=actor) from exc
    with host_tls.undone_on_failure(verified), transaction.atomic():
        host = Host.objects.create(
            name=name,
            uri=uri,
            state=HostState.UP,
            facts=_facts_dict(facts)
            | {"reserved_memory_bytes": hypervisor.reserved_memory_bytes(facts.memory_total_bytes)},
            last_seen=timezone.now(),
            ssh_host_key=key.line if key else "",
            ssh_host_key_pinned_at=timezone.now() if key else None,
            migration_address=migration_address,
        )
        audit.record(
            actor, "host.add", host, detail=uri + (" with certificates" if verified else "")
        )
        if key is not None:
            audit.record(actor, "host.key_pinned", host, detail=f"{key.key_type} {key.fingerprint}")
        _queue_refresh(host, actor)
        if verified:
            host_tls.keep(host, verified)  # last: nothing to undo after it
    return host


def _unreachable(uri: str, exc: Exception, *, pinned: bool, actor: Actor) -> ServiceError:
    """A host that could not be added, audited; the SSH key pinned for it is forgotten."""
    if pinned:
        sshkeys.forget_known_hosts(uri)
    with transaction.atomic():
        audit.record(actor, "host.add", uri, result=AuditResult.FAILURE, detail=str(exc))
    return ServiceError(
        f"Could not connect to {uri}: {exc}. Check the URI, that libvirtd runs there "
        "and that this server may log in to it.",
        field="uri",
    )


def _queue_refresh(host: Host, actor: Actor) -> Job:
    from panel.tasks import refresh_host_task  # panel.tasks imports the services

    job = jobs.create_job(JobKind.HOST_REFRESH, target=f"host:{host.name}", actor=actor, host=host)
    jobs.enqueue_on_commit(refresh_host_task, job.pk)
    return job


def refresh_host(host: Host, *, actor: Actor) -> Job:
    """Queue a full reconcile of the host: facts, checks and inventory."""
    if not can_manage_hosts(actor.user):
        raise _deny(actor, "host.refresh", host)
    with transaction.atomic():
        busy = Job.objects.filter(
            host=host, kind=JobKind.HOST_REFRESH, state__in=[JobState.QUEUED, JobState.RUNNING]
        ).first()
        if busy is not None:
            raise ConflictError(
                f"A refresh of {host.name} is already under way (job #{busy.pk}); wait for it."
            )
        job = _queue_refresh(host, actor)
        audit.record(actor, "host.refresh", host, detail=f"job #{job.pk}")
    return job


def delete_host(host: Host, *, actor: Actor) -> None:
    """Forget a host and its inventory; nothing on the host itself changes."""
    if not can_manage_hosts(actor.user):
        raise _deny(actor, "host.delete", host)
    with transaction.atomic():
        audit.record(actor, "host.delete", host, detail=host.uri)
        host.delete()
    host_tls.forget(host.uri)
    if hypervisor.is_ssh(host.uri):
        sshkeys.forget_known_hosts(host.uri)


def set_host_state(host: Host, state: str, error: str = "") -> None:
    """Record whether the host answers; nothing when an admin removed it meanwhile.
    Going down, and coming back, is told to the administrators who subscribed."""
    before = Host.objects.filter(pk=host.pk).values_list("state", flat=True).first()
    host.state = state
    host.last_error = error
    fields = ["state", "last_error"]
    if state == HostState.UP:
        host.last_seen = timezone.now()
        fields.append("last_seen")
    if not rows.save_if_present(host, fields):
        return
    events.publish(
        events.host_group(host.pk), {"type": "host.update", "host": serialize_host(host)}
    )
    facts.host_state_changed(host, before, state)


def reconcile_host(host: Host, *, job_id: int | None = None, checks: bool = True) -> dict[str, Any]:
    """Read the host (and with checks=True run the host check) and mirror it in the database."""

    def step(progress: int, message: str) -> None:
        if job_id is not None:
            jobs.report(job_id, progress=progress, message=message, log_line=message)

    host_keys.write_pinned(host)
    try:
        if checks:
            step(5, f"Checking {host.name} ({host.uri})")
            report = hypervisor.host_report(host.uri, settings.PANEL_PROBE_GUEST_DIR)
            host.facts = _facts_dict(report.facts) | {
                "reserved_memory_bytes": report.reserved_memory_bytes
            }
            host.checks = [dataclasses.asdict(c) for c in report.checks]
            host.domain_type = report.domain_type
            host.checked_at = timezone.now()
            if not rows.save_if_present(host, ["facts", "checks", "domain_type", "checked_at"]):
                raise GoneError(f"{host.name} was removed from the panel meanwhile.")
            failed = [c.name for c in report.checks if c.status == "fail"]
            step(
                50,
                f"Checks done: domain type {report.domain_type}"
                + (f"; failed: {', '.join(failed)}" if failed else ""),
            )
        for part in registry.inventory_steps:
            if part.clean is not None:
                part.clean(host)
        step(60, "Reading domains, pools, volumes and networks")
        inventory = hypervisor.read_inventory(host.uri)
    except hypervisor.HostUnavailable as exc:
        warning = host_keys.check_offered_key(host)
        set_host_state(host, HostState.DOWN, warning or str(exc))
        if warning:
            raise hypervisor.HostUnavailable(warning) from exc
        raise
    set_host_state(host, HostState.UP)
    step(
        80,
        f"Found {len(inventory.domains)} domains, {len(inventory.pools)} pools, "
        f"{len(inventory.networks)} networks",
    )
    counts: dict[str, Any] = {}
    with transaction.atomic():
        # Locked: removing the host waits until its inventory is saved (and then takes
        # it along); a host removed before this has nothing to save.
        if rows.lock(host) is None:
            raise GoneError(f"{host.name} was removed from the panel meanwhile.")
        for part in registry.inventory_steps:
            counts.update(part.sync(host, inventory))
    step(95, "Inventory saved")
    return counts


def cancel_job(job: Job, *, actor: Actor) -> Job:
    """Ask a queued or running job to stop; a queued one stops at once."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            raise ConflictError(f"Job #{job.pk} has already finished ({job.state}).")
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.state == JobState.QUEUED:
            job.state = JobState.CANCELLED
            job.finished = timezone.now()
            job.message = "Cancelled before it started."
            job.secrets = {}
            fields += ["state", "finished", "message", "secrets"]
        job.save(update_fields=fields)
        audit.record(actor, "job.cancel", job)
        events.publish(events.job_group(job.pk), {"type": "job.update", "job": jobs.serialize(job)})
    return job
