"""vms/{id}/stats/, hosts/{id}/stats/ (latest sample, ?range= history) and vms/{id}/tuning/."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.audit import client_ip
from panel.models import Host
from panel.permissions import CHANGE, VIEW, get_object_for_user, is_admin
from vms.models import VirtualMachine
from vms.services import tuning

from . import serializers, services

RANGE = OpenApiParameter("range", str, enum=["1h", "1d", "30d"], required=False)


class VMStatsView(APIView):
    """GET the VM's latest usage sample; ?range=1h|1d|30d adds the history as columns."""

    @extend_schema(parameters=[RANGE], responses=dict)
    def get(self, request: Request, vm_id: Any) -> HttpResponse:
        # Stored points are JSON already: copied into the answer, never parsed and re-encoded.
        vm = get_object_for_user(VirtualMachine.objects.all(), request.user, vm_id, VIEW)
        body = services.vm_stats_json(vm, request.query_params.get("range"))
        return HttpResponse(body, content_type="application/json")


class HostStatsView(APIView):
    """GET the host's latest usage sample; ?range=1h|1d|30d adds the history as columns."""

    @extend_schema(parameters=[RANGE], responses=dict)
    def get(self, request: Request, host_id: int) -> HttpResponse:
        host = get_object_for_user(Host.objects.all(), request.user, host_id, VIEW)
        body = services.host_stats_json(host, request.query_params.get("range"))
        return HttpResponse(body, content_type="application/json")


class FleetStatsView(APIView):
    """GET every host's usage summed (admins); ?range=1h|1d|30d adds the history."""

    @extend_schema(parameters=[RANGE], responses=dict)
    def get(self, request: Request) -> HttpResponse:
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators see the whole fleet's use.")
        body = services.fleet_stats_json(request.query_params.get("range"))
        return HttpResponse(body, content_type="application/json")


TUNING_ACTIONS = {
    "vcpupin": (serializers.VcpuPinSerializer, "pin_vcpus"),
    "emulatorpin": (serializers.EmulatorPinSerializer, "pin_emulator"),
    "memory": (serializers.MemorySerializer, "set_memory"),
    "vcpus": (serializers.VcpusSerializer, "set_vcpus"),
    "iotune": (serializers.IoTuneSerializer, "set_iotune"),
    "max-vcpus": (serializers.MaxVcpusSerializer, "set_max_vcpus"),
    "max-memory": (serializers.MaxMemorySerializer, "set_max_memory"),
    "numatune": (serializers.NumaTuneSerializer, "set_numatune"),
    "hugepages": (serializers.HugepagesSerializer, "set_hugepages"),
    "nic-bandwidth": (serializers.NicBandwidthSerializer, "set_nic_bandwidth"),
}


def _vm(request: Request, vm_id: Any, action: str) -> VirtualMachine:
    return get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, action
    )


class VMTuningView(APIView):
    """GET the VM's tuning with the host's CPUs, NUMA cells and huge pages."""

    @extend_schema(responses=dict)
    def get(self, request: Request, vm_id: Any) -> Response:
        return Response(tuning.vm_tuning(_vm(request, vm_id, VIEW), actor=request.user))


class VMTuningActionView(APIView):
    """POST vcpupin, emulatorpin, memory, vcpus, iotune, max-vcpus, max-memory, numatune,
    hugepages or nic-bandwidth; answers the tuning read back (and a "warning" when an admin
    overrode a check); nic-bandwidth answers the NIC's limits read back.

    vcpus, memory, max-vcpus and max-memory stay within the limits of the template the VM
    was made from (400) and the project's quota, which counts each VM at the most vCPUs
    and memory it may grow to (403)."""

    @extend_schema(request=dict, responses=dict)
    def post(self, request: Request, vm_id: Any, what: str) -> Response:
        if what not in TUNING_ACTIONS:
            raise Http404(f"No tuning '{what}': use one of {', '.join(TUNING_ACTIONS)}.")
        vm = _vm(request, vm_id, CHANGE)
        serializer_class, service = TUNING_ACTIONS[what]
        params = serializer_class(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        scope = {k: data.pop(k) for k in ("live", "persistent") if k in data}
        who = {"actor": request.user, "source_ip": client_ip(request)}
        warning = ""
        if what == "vcpupin":
            info = tuning.pin_vcpus(vm, data["pins"], **scope, **who)
        elif what == "emulatorpin":
            info = tuning.pin_emulator(vm, data["cpus"], **scope, **who)
        elif what == "memory":
            info, warning = tuning.set_memory(
                vm, data["memory_mib"], force=data["force"], **scope, **who
            )
        elif what == "vcpus":
            info = tuning.set_vcpus(vm, data["vcpus"], **scope, **who)
        elif what == "iotune":
            info = tuning.set_iotune(vm, data.pop("target"), data, **scope, **who)
        elif what == "max-vcpus":
            info = tuning.set_max_vcpus(vm, data["max_vcpus"], **who)
        elif what == "max-memory":
            info, warning = tuning.set_max_memory(
                vm, data["max_memory_mib"], force=data["force"], **who
            )
        elif what == "numatune":
            info = tuning.set_numatune(vm, data["mode"], data["nodeset"], **scope, **who)
        elif what == "hugepages":
            info, warning = tuning.set_hugepages(vm, data["enabled"], force=data["force"], **who)
        else:
            nic = tuning.set_nic_bandwidth(vm, **data, **scope, **who)
            return Response(nic)
        body = dataclasses.asdict(info)
        if warning:
            body["warning"] = warning
        return Response(body)
