"""After a migration: deleting volumes left on a host, where the domain is now, and
settling a migration whose driving process died.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import libvirt

from panel.hypervisor.connection import session
from panel.hypervisor.domains import STATES, domain_info
from panel.hypervisor.migration.domain import delete_paths, domain_by_uuid
from panel.hypervisor.migration.values import ABORT_WAIT_SECONDS, POLL_SECONDS
from panel.hypervisor.specs import DomainInfo


def delete_volumes(uri: str, paths: list[str]) -> list[str]:
    """Delete the volumes at these paths on the host at uri (those that exist); the paths
    deleted."""
    with session(uri) as conn:
        return delete_paths(conn, paths)


def domain_location(source_uri: str, target_uri: str, uuid: str) -> tuple[str, str]:
    """(state on the source, state on the target), "absent" where the host has no such
    domain: what to check after a migration that failed or was cancelled."""
    states = []
    for uri in (source_uri, target_uri):
        with session(uri) as conn:
            dom = domain_by_uuid(conn, uuid)
            states.append("absent" if dom is None else STATES.get(dom.state()[0], "running"))
    return states[0], states[1]


@dataclass(frozen=True)
class Settled:
    """Where a domain ended after a migration whose driver went away: "source", "target"
    or "" (on neither), with its state there and what was done to get there."""

    host: str
    info: DomainInfo | None
    done: tuple[str, ...]


def _job_active(dom: libvirt.virDomain) -> bool:
    try:
        return dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
    except libvirt.libvirtError:
        return False


def settle_migration(source_uri: str, target_uri: str, uuid: str) -> Settled:
    """After the process driving a migration died mid-way, leave the domain on one host.

    A migration still running is aborted. The domain stays on the target only if it runs
    there and no longer runs on the source (the hand-over happened); otherwise the
    target's incoming copy is destroyed and undefined, and a source left paused by the
    migration resumes.
    """
    done: list[str] = []
    with session(source_uri) as src, session(target_uri) as dst:
        s = domain_by_uuid(src, uuid)
        if s is not None and _job_active(s):
            with contextlib.suppress(libvirt.libvirtError):
                s.abortJob()
                done.append("aborted the migration")
            deadline = time.monotonic() + ABORT_WAIT_SECONDS
            while _job_active(s) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        d = domain_by_uuid(dst, uuid)
        s_active = s is not None and bool(s.isActive())
        d_state = d.state()[0] if d is not None else None
        if d is not None and not s_active and d_state == libvirt.VIR_DOMAIN_RUNNING:
            return Settled("target", domain_info(d), tuple(done))
        if d is not None and s is None:
            # The source let go of it: the target's copy is the only one; let it run.
            if d_state == libvirt.VIR_DOMAIN_PAUSED:
                d.resume()
                done.append("resumed it on the target")
            return Settled("target", domain_info(d), tuple(done))
        if d is not None:
            if d.isActive():
                d.destroy()
            if d.isPersistent():
                d.undefine()
            done.append("removed the incomplete copy on the target")
        if s is None:
            return Settled("", None, tuple(done))
        state, reason = s.state()
        if state == libvirt.VIR_DOMAIN_PAUSED and reason in (
            libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
            libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED,
            libvirt.VIR_DOMAIN_PAUSED_UNKNOWN,
        ):
            s.resume()
            done.append("resumed it on the source")
        return Settled("source", domain_info(s), tuple(done))
