"""The Prometheus endpoint (admins' sessions, an admin's API token or the scrape token),
and the VM's tuning tab."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token

from panel import hypervisor
from panel.audit import client_ip
from panel.exceptions import ServiceError
from panel.hypervisor.specs import IOTUNE_FIELDS
from panel.permissions import CHANGE, allowed, get_object_for_user, is_admin
from vms.models import VirtualMachine
from vms.services import tuning

from . import metrics as exposition

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _scraper_allowed(request: HttpRequest) -> bool | None:
    """True/False when the request carries credentials for /metrics; None when it has none."""
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        expected = getattr(settings, "PANEL_METRICS_TOKEN", "")
        return bool(expected) and hmac.compare_digest(credential, expected)
    if scheme.lower() == "token" and credential:
        token = Token.objects.select_related("user").filter(key=credential).first()
        return token is not None and is_admin(token.user)
    if request.user.is_authenticated:
        return is_admin(request.user)
    return None


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; 401 without credentials, 403 with ones that are not allowed."""
    allowed = _scraper_allowed(request)
    if allowed is None:
        response = HttpResponse(
            "Log in as an admin, or send 'Authorization: Bearer <PANEL_METRICS_TOKEN>' "
            "or an admin's API token ('Authorization: Token <key>').\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="panel metrics"'
        return response
    if not allowed:
        return HttpResponse(
            "These credentials may not read the metrics: use an admin's token or the "
            "PANEL_METRICS_TOKEN set on the server.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(exposition.render(), content_type=CONTENT_TYPE)


def _int(value: str | None, field: str) -> int:
    try:
        return int(value or 0)
    except ValueError:
        raise ServiceError(f"{field}: '{value}' is not a whole number.", field=field) from None


def _ints(values: list[str], field: str) -> list[int]:
    return [_int(v, field) for v in values]


def vm_tuning_page(request: HttpRequest, vm_id: str) -> HttpResponse:
    """The VM's tuning tab: its vCPUs, memory, pinning over the host's CPUs, I/O limits."""
    vm = get_object_for_user(VirtualMachine.objects.select_related("host"), request.user, vm_id)
    try:
        info = tuning.vm_tuning(vm, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("vm_detail", vm_id=vm.pk)
    cells: dict[int, list[dict]] = {}
    for cpu in info["host"]["cpus"]:
        cells.setdefault(cpu["cell"], []).append(cpu)
    pins = [{"vcpu": i, "cpus": set(p)} for i, p in enumerate(info["vcpu_pins"])]
    return render(
        request,
        "monitoring/vm_tuning.html",
        {
            "vm": vm,
            "t": info,
            "cells": sorted(cells.items()),
            "pins": pins,
            "emulator": set(info["emulator_pin"]),
            "iotune_fields": IOTUNE_FIELDS,
            "numa_modes": list(hypervisor.NUMA_MODES),
            "can_change": allowed(request.user, vm, CHANGE),
            "is_admin": is_admin(request.user),
        },
    )


@require_POST
def vm_tune(request: HttpRequest, vm_id: str, what: str) -> HttpResponse:
    """The tuning tab's forms: each calls the same service as the API."""
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, CHANGE
    )
    post = request.POST
    scope = {"live": post.get("live") == "on", "persistent": post.get("persistent") == "on"}
    who = {"actor": request.user, "source_ip": client_ip(request)}
    try:
        if what == "vcpupin":
            count = _int(post.get("vcpu_rows"), "vcpu_rows")
            pins = {i: _ints(post.getlist(f"pin-{i}"), "pins") for i in range(count)}
            tuning.pin_vcpus(vm, pins, **scope, **who)
            messages.success(request, f"vCPU pinning of {vm.name} applied.")
        elif what == "emulatorpin":
            tuning.pin_emulator(vm, _ints(post.getlist("cpus"), "cpus"), **scope, **who)
            messages.success(request, f"Emulator pinning of {vm.name} applied.")
        elif what == "memory":
            _info, warning = tuning.set_memory(
                vm,
                _int(post.get("memory_mib"), "memory_mib"),
                force=post.get("force") == "on",
                **scope,
                **who,
            )
            if warning:
                messages.warning(request, warning)
            else:
                messages.success(request, f"Memory of {vm.name} set.")
        elif what == "vcpus":
            tuning.set_vcpus(vm, _int(post.get("vcpus"), "vcpus"), **scope, **who)
            messages.success(request, f"vCPUs of {vm.name} set.")
        elif what == "iotune":
            limits = {f: _int(post.get(f), f) for f in IOTUNE_FIELDS}
            if any(v < 0 for v in limits.values()):
                raise ServiceError("Limits cannot be negative: 0 means no limit.", field="iotune")
            tuning.set_iotune(vm, post.get("target", ""), limits, **scope, **who)
            messages.success(request, f"I/O limits of {post.get('target')} applied.")
        elif what == "max-vcpus":
            tuning.set_max_vcpus(vm, _int(post.get("max_vcpus"), "max_vcpus"), **who)
            messages.success(request, f"Maximum vCPUs of {vm.name} set (from its next boot).")
        elif what in ("max-memory", "hugepages"):
            if what == "max-memory":
                _info, warning = tuning.set_max_memory(
                    vm,
                    _int(post.get("max_memory_mib"), "max_memory_mib"),
                    force=post.get("force") == "on",
                    **who,
                )
            else:
                _info, warning = tuning.set_hugepages(
                    vm, post.get("enabled") == "on", force=post.get("force") == "on", **who
                )
            if warning:
                messages.warning(request, warning)
            else:
                messages.success(request, f"{vm.name}'s definition changed (from its next boot).")
        elif what == "numatune":
            tuning.set_numatune(
                vm, post.get("mode", ""), post.get("nodeset", "").strip(), **scope, **who
            )
            messages.success(request, f"NUMA policy of {vm.name} set.")
        elif what == "nic-bandwidth":
            nic = tuning.set_nic_bandwidth(
                vm,
                post.get("mac", ""),
                _int(post.get("inbound_kib"), "inbound_kib"),
                _int(post.get("outbound_kib"), "outbound_kib"),
                **scope,
                **who,
            )
            messages.success(request, f"Bandwidth of NIC {nic['mac']} set.")
        else:
            raise Http404("No such tuning.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("vm_tuning_page", vm_id=vm.pk)
