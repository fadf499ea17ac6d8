"""vms/{id}/tuning/: GET the VM's tuning; one endpoint per change, POST
vms/{id}/tuning/<change>/, each with its own input and one service call.

Each change answers the tuning read back (with a "warning" when an admin overrode a
check); nic-bandwidth answers the NIC's limits read back. vcpus, memory, max-vcpus and
max-memory stay within the limits of the template the VM was made from (400) and the
project's quota, which counts each VM at the most vCPUs and memory it may grow to (403).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.http import Http404
from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel import hypervisor
from panel.actors import Actor
from panel.permissions import CONFIG_CPU_MEMORY, VIEW, get_object_for_user
from vms.models import VirtualMachine
from vms.services import tuning
from vms.services.tuning import Scope

from . import tuning_serializers as inputs


def _vm(request: Request, vm_id: Any, action: str) -> VirtualMachine:
    return get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, action
    )


def _scope(data: dict[str, Any]) -> Scope:
    return Scope(live=data["live"], persistent=data["persistent"])


def _answer(info: hypervisor.TuningInfo, warning: str = "") -> dict[str, Any]:
    body = dataclasses.asdict(info)
    if warning:
        body["warning"] = warning
    return body


class VMTuningView(APIView):
    """GET the VM's tuning with the host's CPUs, NUMA cells and huge pages."""

    @extend_schema(responses=dict)
    def get(self, request: Request, vm_id: Any) -> Response:
        return Response(tuning.vm_tuning(_vm(request, vm_id, VIEW), actor=Actor.of(request)))


class TuningChange(APIView):
    """One change: its input checked by serializer_class, then apply() with the VM."""

    serializer_class: type[serializers.Serializer]

    def post(self, request: Request, vm_id: Any) -> Response:
        vm = _vm(request, vm_id, CONFIG_CPU_MEMORY)
        given = self.serializer_class(data=request.data)
        given.is_valid(raise_exception=True)
        return Response(self.apply(vm, dict(given.validated_data), Actor.of(request)))

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        raise NotImplementedError


@extend_schema(request=inputs.VcpuPinSerializer, responses=dict)
class VcpuPinView(TuningChange):
    """Which host CPUs each vCPU runs on."""

    serializer_class = inputs.VcpuPinSerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return _answer(tuning.pin_vcpus(vm, data["pins"], **_scope(data), actor=actor))


@extend_schema(request=inputs.EmulatorPinSerializer, responses=dict)
class EmulatorPinView(TuningChange):
    """Which host CPUs the emulator threads run on."""

    serializer_class = inputs.EmulatorPinSerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return _answer(tuning.pin_emulator(vm, data["cpus"], **_scope(data), actor=actor))


@extend_schema(request=inputs.MemorySerializer, responses=dict)
class MemoryView(TuningChange):
    """The memory in use (a warning when an admin overrode the host's reserve)."""

    serializer_class = inputs.MemorySerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        info, warning = tuning.set_memory(
            vm, data["memory_mib"], force=data["force"], **_scope(data), actor=actor
        )
        return _answer(info, warning)


@extend_schema(request=inputs.VcpusSerializer, responses=dict)
class VcpusView(TuningChange):
    """The vCPUs in use."""

    serializer_class = inputs.VcpusSerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return _answer(tuning.set_vcpus(vm, data["vcpus"], **_scope(data), actor=actor))


@extend_schema(request=inputs.IoTuneSerializer, responses=dict)
class IoTuneView(TuningChange):
    """A disk's I/O limits (0 is no limit)."""

    serializer_class = inputs.IoTuneSerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        scope = _scope(data)
        target = data.pop("target")
        limits = {k: v for k, v in data.items() if k not in scope}
        return _answer(tuning.set_iotune(vm, target, limits, **scope, actor=actor))


@extend_schema(request=inputs.MaxVcpusSerializer, responses=dict)
class MaxVcpusView(TuningChange):
    """The most vCPUs the VM can have, from its next boot."""

    serializer_class = inputs.MaxVcpusSerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return _answer(tuning.set_max_vcpus(vm, data["max_vcpus"], actor=actor))


@extend_schema(request=inputs.MaxMemorySerializer, responses=dict)
class MaxMemoryView(TuningChange):
    """The most memory the VM can have, from its next boot."""

    serializer_class = inputs.MaxMemorySerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        info, warning = tuning.set_max_memory(
            vm, data["max_memory_mib"], force=data["force"], actor=actor
        )
        return _answer(info, warning)


@extend_schema(request=inputs.NumaTuneSerializer, responses=dict)
class NumaTuneView(TuningChange):
    """The NUMA policy and nodes of the VM's memory."""

    serializer_class = inputs.NumaTuneSerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return _answer(
            tuning.set_numatune(vm, data["mode"], data["nodeset"], **_scope(data), actor=actor)
        )


@extend_schema(request=inputs.HugepagesSerializer, responses=dict)
class HugepagesView(TuningChange):
    """Whether the VM's memory is backed by huge pages, from its next boot."""

    serializer_class = inputs.HugepagesSerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        info, warning = tuning.set_hugepages(vm, data["enabled"], force=data["force"], actor=actor)
        return _answer(info, warning)


@extend_schema(request=inputs.NicBandwidthSerializer, responses=dict)
class NicBandwidthView(TuningChange):
    """A NIC's inbound and outbound bandwidth limits."""

    serializer_class = inputs.NicBandwidthSerializer

    def apply(self, vm: VirtualMachine, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return tuning.set_nic_bandwidth(
            vm,
            data["mac"],
            data["inbound_kib"],
            data["outbound_kib"],
            **_scope(data),
            actor=actor,
        )


CHANGES: dict[str, type[TuningChange]] = {
    "vcpupin": VcpuPinView,
    "emulatorpin": EmulatorPinView,
    "memory": MemoryView,
    "vcpus": VcpusView,
    "iotune": IoTuneView,
    "max-vcpus": MaxVcpusView,
    "max-memory": MaxMemoryView,
    "numatune": NumaTuneView,
    "hugepages": HugepagesView,
    "nic-bandwidth": NicBandwidthView,
}


class VMTuningByNameView(APIView):
    """POST vcpupin, emulatorpin, memory, vcpus, iotune, max-vcpus, max-memory, numatune,
    hugepages or nic-bandwidth: kept in the document for clients written against this
    path. Each known name is routed to its change's own endpoint before this one, so only
    an unknown name arrives here: a 404 that lists the known ones."""

    @extend_schema(request=dict, responses=dict, deprecated=True, operation_id="vms_tuning_create")
    def post(self, request: Request, vm_id: Any, what: str) -> Response:
        raise Http404(f"No tuning '{what}': use one of {', '.join(CHANGES)}.")


urlpatterns: list[URLPattern] = [
    path("vms/<uuid:vm_id>/tuning/", VMTuningView.as_view(), name="vm_tuning"),
    *(
        path(
            f"vms/<uuid:vm_id>/tuning/{change}/",
            view.as_view(),
            name=f"api_vm_tune_{change.replace('-', '_')}",
        )
        for change, view in CHANGES.items()
    ),
    path("vms/<uuid:vm_id>/tuning/<str:what>/", VMTuningByNameView.as_view(), name="vm_tune"),
]
