"""The Snapshots card's forms: take, revert, delete and merge, each answered by a job."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest

from panel.actors import Actor
from panel.models import Job
from panel.permissions import SNAPSHOT

from .models import VirtualMachine
from .page_forms import vm_form
from .services import merges, snapshots


def _started(request: HttpRequest, vm: VirtualMachine, what: str, job: Job) -> None:
    messages.info(request, f"Snapshot {what} of {vm.name} started (job #{job.pk}).")


@vm_form(SNAPSHOT)
def vm_snapshot_create(request: HttpRequest, vm: VirtualMachine) -> None:
    """Take a snapshot (internal or external, with memory or not)."""
    data = request.POST
    job = snapshots.take_snapshot(
        vm,
        name=data.get("name", ""),
        description=data.get("description", ""),
        kind=data.get("kind", "internal"),
        quiesce=data.get("quiesce") == "1",
        actor=Actor.of(request),
    )
    _started(request, vm, "create", job)


@vm_form(SNAPSHOT)
def vm_snapshot_revert(request: HttpRequest, vm: VirtualMachine) -> None:
    """Revert to a snapshot, then start the VM if asked."""
    data = request.POST
    job = snapshots.revert_snapshot(
        vm,
        data.get("name", ""),
        start=data.get("start") == "1",
        discard_later=data.get("discard_later") == "1",
        actor=Actor.of(request),
    )
    _started(request, vm, "revert", job)


@vm_form(SNAPSHOT)
def vm_snapshot_delete(request: HttpRequest, vm: VirtualMachine) -> None:
    """Delete a snapshot (and its children, if asked)."""
    data = request.POST
    job = snapshots.delete_snapshot(
        vm, data.get("name", ""), children=data.get("children") == "1", actor=Actor.of(request)
    )
    _started(request, vm, "delete", job)


@vm_form(SNAPSHOT)
def vm_snapshot_merge(request: HttpRequest, vm: VirtualMachine) -> None:
    """Merge a disk's external snapshot layers (block commit or pull)."""
    data = request.POST
    job = merges.merge_disk(
        vm, data.get("disk", ""), mode=data.get("mode", "commit"), actor=Actor.of(request)
    )
    _started(request, vm, "merge", job)
