"""VM pages: the live list with filters and bulk actions, details, actions, delete, XML."""

from __future__ import annotations

import contextlib
import difflib
import uuid

import kombu.exceptions
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.identity.reauth import ensure_recent
from panel.middleware import style_nonce
from panel.models import Job, Project
from panel.paging import page_of
from panel.permissions import (
    ALLOCATE,
    CONFIG_CPU_MEMORY,
    CONSOLE,
    CONSOLE_INPUT,
    POWER,
    VIEW,
    allowed,
    can_see_audit_log,
    get_object_for_user,
    is_admin,
    privileges_on,
    restrict,
    visible_hosts,
    visible_jobs,
)
from storage.models import Volume

from . import bulk, services
from .bulk import BULK_ACTIONS
from .choices import VMState
from .models import VirtualMachine
from .permissions import visible_vms
from .search import matching, with_tag
from .services import disks, tags
from .tasks import vm_details_task

ORDERINGS = {
    "name",
    "-name",
    "state",
    "-state",
    "host__name",
    "-host__name",
    "vcpus",
    "-vcpus",
    "memory_mib",
    "-memory_mib",
    "project__name",
    "-project__name",
}
# Which states each button is offered in (the server checks again).
BUTTON_STATES = {
    "start": "shutoff crashed",
    "shutdown": "running",
    "force-off": "running paused pmsuspended crashed",
    "reboot": "running",
    "reset": "running",
    "suspend": "running",
    "resume": "paused",
    "save": "running",
    "restore": "shutoff",
}


LIST_COLUMNS = (
    "id",
    "name",
    "state",
    "vcpus",
    "memory_mib",
    "ips",
    "host",
    "host__name",
    "project",
    "project__name",
    "tags",
)


def _choices(qs: QuerySet, chosen: str) -> list[tuple[int, str, bool]]:
    return [
        (pk, name, str(pk) == chosen) for pk, name in qs.order_by("name").values_list("pk", "name")
    ]


def _filtered(qs: QuerySet, f: dict[str, str]) -> QuerySet:
    """The VMs of qs matching the list's search, filters and ordering."""
    qs = matching(qs, f["q"])
    if f["host"].isdigit():
        qs = qs.filter(host_id=int(f["host"]))
    if f["project"].isdigit():
        qs = qs.filter(project_id=int(f["project"]))
    if f["state"] in VMState.values:
        qs = qs.filter(state=f["state"])
    qs = with_tag(qs, f["tag"])
    return qs.order_by(f["ordering"] if f["ordering"] in ORDERINGS else "name", "pk")


def vm_list(request: HttpRequest) -> HttpResponse:
    keys = ("q", "host", "project", "state", "tag", "ordering")
    f = {k: request.GET.get(k, "").strip() for k in keys}
    # Only what the rows show: not the domain XML, the details read from the host, nor
    # the device lists.
    qs = _filtered(visible_vms(request.user).only(*LIST_COLUMNS), f)
    page, query = page_of(request, qs)
    context = {
        "page": page,
        "filters": f,
        # The filter menus: (id, name, chosen) without building a row object per host.
        "hosts": _choices(visible_hosts(request.user), f["host"]),
        "projects": _choices(restrict(Project.objects.all(), request.user, VIEW), f["project"]),
        # Live state for the rows shown: one socket that follows these VMs.
        "row_ids": ",".join(str(vm.pk) for vm in page),
        "states": VMState.choices,
        "query": query,
        "button_states": BUTTON_STATES,
    }
    return render(request, "vms/vm_list.html", context)


def _uuids(values: list[str]) -> list[uuid.UUID]:
    """The VM ids among values (anything else names no VM: nothing to act on)."""
    ids = []
    for raw in values:
        with contextlib.suppress(ValueError):
            ids.append(uuid.UUID(raw))
    return ids


@require_POST
def vm_bulk(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action", "")
    ids = _uuids(request.POST.getlist("vm"))
    if action not in BULK_ACTIONS:
        messages.error(
            request, f"Choose what to do with the selected VMs: {', '.join(BULK_ACTIONS.values())}."
        )
    elif not ids:
        messages.error(request, "Select at least one VM first.")
    else:
        done, failed = bulk.run(request, action, visible_vms(request.user).filter(pk__in=ids))
        if done:
            messages.success(request, f"{BULK_ACTIONS[action]}: {', '.join(done)}.")
        for line in failed:
            messages.error(request, line)
    next_url = request.POST.get("next", "")
    return redirect(next_url if next_url.startswith("/vms/") else "vm_list")


def _stale(vm: VirtualMachine, seconds: int = 10) -> bool:
    read_at = parse_datetime(vm.details.get("read_at", "")) if vm.details.get("read_at") else None
    return read_at is None or (timezone.now() - read_at).total_seconds() > seconds


def vm_detail(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project", "owner"), request.user, vm_id
    )
    if vm.state != VMState.MISSING and vm.host.is_up and _stale(vm):
        # The page shows what the database knows; fresh details arrive over the websocket.
        try:
            vm_details_task.delay(str(vm.pk))
        except kombu.exceptions.OperationalError:
            pass  # no worker can be reached: the page shows what the database knows
    context = {
        "vm": vm,
        "can": privileges_on(request.user, vm),
        "is_admin": is_admin(request.user),
        "button_states": BUTTON_STATES,
        "projects": Project.objects.all() if is_admin(request.user) else [],
        **_disk_context(request, vm),
        **_history_context(request, vm),
    }
    return render(request, "vms/vm_detail.html", context)


# The VM page's tabs: (id, label), the first shown unless the address names another.
VM_TABS = [
    ("summary", "Summary"),
    ("console", "Console"),
    ("hardware", "Hardware"),
    ("snapshots", "Snapshots"),
    ("backups", "Backups"),
    ("tuning", "Tuning"),
    ("options", "Options"),
    ("history", "History"),
]
HISTORY_SIZE = 20


def _history_context(request: HttpRequest, vm: VirtualMachine) -> dict[str, object]:
    """The VM's latest job (its progress card) and its recent jobs (the History tab)."""
    history = list(visible_jobs(request.user).filter(target=f"vm:{vm.pk}")[:HISTORY_SIZE])
    return {
        "tabs": VM_TABS,
        "job": history[0] if history else None,
        "history": history,
        "history_size": HISTORY_SIZE,
        "can_see_audit": can_see_audit_log(request.user),
    }


def _disk_context(request: HttpRequest, vm: VirtualMachine) -> dict[str, object]:
    volumes = restrict(
        Volume.objects.filter(pool__host=vm.host_id).select_related("pool"), request.user
    ).filter(Q(project=vm.project_id) | Q(shared=True))
    return {
        "disk_volumes": volumes.order_by("pool__name", "name"),
        "disk_choices": {
            "buses": list(disks.BUSES),
            "cache": disks.CACHE_MODES,
            "io": disks.IO_MODES,
            "discard": disks.DISCARD_MODES,
        },
    }


@require_POST
def vm_action(request: HttpRequest, vm_id: str, action: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, POWER
    )
    try:
        result = services.perform_action(
            vm,
            action,
            actor=Actor.of(request),
            mode=request.POST.get("mode", "acpi"),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        if isinstance(result, Job):
            messages.info(
                request, f"{action.capitalize()} of {vm.name} started (job #{result.pk})."
            )
        else:
            messages.success(
                request, f"{vm.name}: {action.replace('-', ' ')} done; now {result.state}."
            )
    if (next_url := request.POST.get("next", "")).startswith("/vms/"):
        return redirect(next_url)
    return redirect("vm_detail", vm_id=vm.pk)


@require_POST
def vm_autostart(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host"), request.user, vm_id, POWER
    )
    try:
        services.set_vm_autostart(vm, request.POST.get("enabled") == "1", actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("vm_detail", vm_id=vm.pk)


@require_POST
def vm_tags(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"),
        request.user,
        vm_id,
        CONFIG_CPU_MEMORY,
    )
    try:
        vm = tags.set_vm_tags(vm, request.POST.get("tags", ""), actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Tags of {vm.name}: {tags.listed(vm.tags)}.")
    return redirect("vm_detail", vm_id=vm.pk)


@require_POST
def vm_assign(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(VirtualMachine.objects.all(), request.user, vm_id)
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators can move a VM to another project.")
    project = Project.objects.filter(pk=request.POST.get("project") or 0).first()
    if project is None:
        messages.error(request, "Choose a project.")
    else:
        services.assign_vm(vm, project, actor=Actor.of(request))
        messages.success(request, f"{vm.name} now belongs to {project.name}.")
    return redirect("vm_detail", vm_id=vm.pk)


def vm_delete(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host"), request.user, vm_id, ALLOCATE
    )
    if request.method == "POST":
        if request.POST.getlist("remove"):  # its storage goes too
            ensure_recent(request)
        try:
            job = services.delete_vm(
                vm,
                actor=Actor.of(request),
                remove_disks=request.POST.getlist("remove"),
            )
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            if job is None:
                messages.success(request, f"{vm.name} removed from the list.")
                return redirect("vm_list")
            messages.info(request, f"Deleting {vm.name} (job #{job.pk}).")
            return redirect("job_detail", job_id=job.pk)
    return render(request, "vms/vm_delete.html", {"vm": vm})


def vm_xml(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(VirtualMachine.objects.select_related("host"), request.user, vm_id)
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators can edit a VM's XML.")
    xml = request.POST.get("xml", vm.xml)
    diff = ""
    status = 200
    if request.method == "POST":
        diff = "".join(
            difflib.unified_diff(vm.xml.splitlines(True), xml.splitlines(True), "current", "edited")
        )
        if request.POST.get("confirm") == "1":
            try:
                services.edit_xml(vm, xml, actor=Actor.of(request))
            except ServiceError as exc:
                messages.error(request, exc.message)
                status = 400
            else:
                messages.success(request, f"The definition of {vm.name} was saved.")
                return redirect("vm_detail", vm_id=vm.pk)
    return render(request, "vms/vm_xml.html", {"vm": vm, "xml": xml, "diff": diff}, status=status)


def vm_console(request: HttpRequest, vm_id: str, kind: str) -> HttpResponse:
    """The serial (xterm.js) or graphical (noVNC) console page; its script fetches a ticket."""
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host"), request.user, vm_id, CONSOLE
    )
    if kind not in ("serial", "vnc"):
        return redirect("vm_detail", vm_id=vm.pk)
    context = {"vm": vm, "kind": kind, "view_only": not allowed(request.user, vm, CONSOLE_INPUT)}
    if kind == "serial":
        context["style_nonce"] = style_nonce(request)
    return render(request, f"vms/console_{kind}.html", context)


@require_POST
def vm_vnc_password(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host"), request.user, vm_id, CONFIG_CPU_MEMORY
    )
    try:
        services.set_vnc_password(vm, request.POST.get("password", ""), actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            "VNC password set." if request.POST.get("password") else "VNC password cleared.",
        )
    return redirect("vm_detail", vm_id=vm.pk)


@require_POST
def vm_clone(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, ALLOCATE
    )
    try:
        job = services.clone_vm(
            vm,
            request.POST.get("name", ""),
            linked=request.POST.get("linked") == "1",
            actor=Actor.of(request),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("vm_detail", vm_id=vm.pk)
    messages.info(request, f"Cloning {vm.name} (job #{job.pk}).")
    return redirect("job_detail", job_id=job.pk)
