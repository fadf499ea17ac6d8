"""The Snapshots card's forms: take, revert and delete, each answered by a job."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import CHANGE, get_object_for_user

from .models import VirtualMachine
from .services import merges, snapshots


@require_POST
def vm_snapshot_action(request: HttpRequest, vm_id: str, action: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, CHANGE
    )
    data = request.POST
    try:
        if action == "create":
            job = snapshots.take_snapshot(
                vm,
                name=data.get("name", ""),
                description=data.get("description", ""),
                kind=data.get("kind", "internal"),
                quiesce=data.get("quiesce") == "1",
                actor=Actor.of(request),
            )
        elif action == "revert":
            job = snapshots.revert_snapshot(
                vm,
                data.get("name", ""),
                start=data.get("start") == "1",
                discard_later=data.get("discard_later") == "1",
                actor=Actor.of(request),
            )
        elif action == "delete":
            job = snapshots.delete_snapshot(
                vm,
                data.get("name", ""),
                children=data.get("children") == "1",
                actor=Actor.of(request),
            )
        elif action == "merge":
            job = merges.merge_disk(
                vm,
                data.get("disk", ""),
                mode=data.get("mode", "commit"),
                actor=Actor.of(request),
            )
        else:
            raise ServiceError(
                f"Unknown snapshot action '{action}': use create, revert, delete or merge."
            )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"Snapshot {action} of {vm.name} started (job #{job.pk}).")
    return redirect("vm_detail", vm_id=vm.pk)
