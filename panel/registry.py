"""What the apps plug into the core, registered in their AppConfig.ready().

The core (`panel`) never imports an app: it calls what the apps registered here.
- inventory steps: how a host's inventory (domains, pools, networks) becomes rows,
  run in registration order inside one transaction by `reconcile_host`, with an
  optional clean-up run before the host is read;
- the domain event handler: what the watcher does when libvirt reports that a
  domain changed or went away;
- quota usage: what each app counts against a project's quota;
- undo of abandoned jobs: what to put right when a job's worker died mid-way.

Each hook is a plain module-level table, filled once per process as Django starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import hypervisor
    from .models import Host, Job, Project


@dataclass(frozen=True)
class InventoryStep:
    """One app's part of reading a host: `sync` saves its share of the inventory and
    returns counts for the job's result; `clean` (optional) runs before the read."""

    name: str
    sync: Callable[[Host, hypervisor.Inventory], dict[str, Any]]
    clean: Callable[[Host], object] | None = None


@dataclass(frozen=True)
class DomainEvents:
    """What the watcher calls: `changed(host, info)` with the domain as libvirt has it
    now, `gone(host, uuid)` when it was undefined or cannot be found, and `stopped(host,
    uuid, how)` first when it stopped or crashed (how: libvirt's reason, or "crashed")."""

    changed: Callable[[Host, hypervisor.DomainInfo], object]
    gone: Callable[[Host, str], object]
    stopped: Callable[[Host, str, str], object] | None = None


inventory_steps: list[InventoryStep] = []
domain_events: list[DomainEvents] = []
# Each returns {quota field: amount used}; the amounts of all of them are added up.
quota_usage: list[Callable[[Project], dict[str, int]]] = []
# {job kind: what undoes an abandoned job of that kind; returns what it did, in words}
undo_abandoned: dict[str, Callable[[Job], str]] = {}


def add_inventory_step(step: InventoryStep) -> None:
    """Register an app's part of a host's inventory (once per name)."""
    if all(s.name != step.name for s in inventory_steps):
        inventory_steps.append(step)


def set_domain_events(handler: DomainEvents) -> None:
    """Register the watcher's domain event handler (the VM app's)."""
    domain_events[:] = [handler]


def add_quota_usage(count: Callable[[Project], dict[str, int]]) -> None:
    """Register what an app counts against a project's quota."""
    if count not in quota_usage:
        quota_usage.append(count)


def add_undo(kinds: tuple[str, ...] | list[str], undo: Callable[[Job], str]) -> None:
    """Register how abandoned jobs of these kinds are put right."""
    for kind in kinds:
        undo_abandoned[kind] = undo
