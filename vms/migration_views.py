"""The Migrate dialog: target hosts with their pre-check (GET, loaded when the dialog
opens), the migration it submits (POST), and its Move storage form (a disk to another
pool of the same host); both land on the job's page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import MIGRATE, VIEW, get_object_for_user, restrict
from storage.models import StoragePool

from .models import VirtualMachine
from .services import migrate, move_storage

FORM_BOOLS = ("live", "persistent", "undefine_source", "auto_converge", "post_copy", "tls")


@require_http_methods(["GET", "POST"])
def vm_migrate(request: HttpRequest, vm_id: str) -> HttpResponse:
    """GET: the migrate dialog's targets with their pre-checks; POST: migrate."""
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, MIGRATE
    )
    if request.method != "POST":
        return _migrate_dialog(request, vm)
    data: dict[str, Any] = {
        k: request.POST.get(k, "")
        for k in ("target_host", "copy_storage", "bandwidth_mib", "target_pool")
    }
    data.update({k: k in request.POST for k in FORM_BOOLS})
    try:
        job = migrate.migrate_vm(vm, migrate.MigrationAsk.parse(data), actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("vm_detail", vm_id=vm.pk)
    messages.info(request, f"Migrating {vm.name} (job #{job.pk}).")
    return redirect("job_detail", job_id=job.pk)


def _migrate_dialog(request: HttpRequest, vm: VirtualMachine) -> HttpResponse:
    targets = migrate.target_checks(vm, actor=Actor.of(request))
    pools = restrict(StoragePool.objects.select_related("host"), request.user, VIEW)
    rows = [(host, checks, not any(c.status == "fail" for c in checks)) for host, checks in targets]
    return render(
        request,
        "vms/_migrate_targets.html",
        {
            "vm": vm,
            "targets": rows,
            "pools": pools.filter(host__in=[host for host, _ in targets], state="active"),
            "local_pools": pools.filter(host=vm.host, state="active"),
            "movable_disks": [d for d in vm.disks if d.get("device") == "disk" and d.get("source")],
        },
    )


@require_POST
def vm_move_storage(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, MIGRATE
    )
    data = {k: request.POST.get(k, "") for k in ("disk", "pool")}
    try:
        ask = move_storage.MoveAsk.parse(data)
        job = move_storage.move_storage(vm, ask, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("vm_detail", vm_id=vm.pk)
    messages.info(request, f"Moving {data['disk']} of {vm.name} (job #{job.pk}).")
    return redirect("job_detail", job_id=job.pk)
