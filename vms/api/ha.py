"""HA in the API: vms/{id}/ha/ (a VM marked HA or not), hosts/{id}/fencing/ (how a host
is fenced, admins) and hosts/{id}/confirm-off/ (an admin's word that a manually fenced
host is off: its HA VMs restart elsewhere, each as a job)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.actors import Actor
from panel.choices import HostFencing
from panel.models import Host
from panel.permissions import CONFIG_CPU_MEMORY, VIEW, get_object_for_user, require_admin
from vms.models import VirtualMachine
from vms.services import failover, ha


class HASerializer(serializers.Serializer):
    enabled = serializers.BooleanField(
        help_text="Restart the VM on another host when its host is lost. Only a VM whose "
        "disks another host sees at the same path can be HA."
    )


class FencingSerializer(serializers.Serializer):
    fencing = serializers.ChoiceField(
        choices=HostFencing.choices,
        allow_blank=True,
        help_text="agent (the host's panel-ha-agent stops its HA VMs when the panel's lease "
        "runs out), manual (an admin confirms the host is off) or '' (none: its HA VMs are "
        "never restarted elsewhere).",
    )


VM_HA = inline_serializer("VMHA", {"id": serializers.UUIDField(), "ha": serializers.BooleanField()})
HOST_FENCING = inline_serializer(
    "HostFencing",
    {
        "id": serializers.IntegerField(),
        "fencing": serializers.CharField(),
        "why_not_restarted": serializers.CharField(),
    },
)
RESTARTS = inline_serializer(
    "HARestartsQueued", {"jobs": serializers.ListField(child=serializers.IntegerField())}
)


class VMHAView(APIView):
    @extend_schema(request=HASerializer, responses={200: VM_HA})
    def post(self, request: Request, vm_id: str) -> Response:
        """Mark the VM HA, or not."""
        vm = get_object_for_user(
            VirtualMachine.objects.select_related("host", "project"),
            request.user,
            vm_id,
            CONFIG_CPU_MEMORY,
        )
        body = HASerializer(data=request.data)
        body.is_valid(raise_exception=True)
        vm = ha.set_vm_ha(vm, body.validated_data["enabled"], actor=Actor.of(request))
        return Response({"id": str(vm.pk), "ha": vm.ha})


class HostFencingView(APIView):
    @extend_schema(request=FencingSerializer, responses={200: HOST_FENCING})
    def post(self, request: Request, host_id: int) -> Response:
        """Choose how the host is fenced (admins)."""
        host = get_object_for_user(Host.objects.all(), request.user, host_id, VIEW)
        require_admin(request.user, "choose how hosts are fenced")
        body = FencingSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        host = ha.set_fencing(host, body.validated_data["fencing"], actor=Actor.of(request))
        why = ha.why_not_restarted(host)
        return Response({"id": host.pk, "fencing": host.fencing, "why_not_restarted": why})


class HostConfirmOffView(APIView):
    @extend_schema(request=None, responses={202: RESTARTS})
    def post(self, request: Request, host_id: int) -> Response:
        """Confirm the manually fenced host is off (admins): its HA VMs restart elsewhere."""
        host = get_object_for_user(Host.objects.all(), request.user, host_id, VIEW)
        made = failover.confirm_host_off(host, actor=Actor.of(request))
        return Response({"jobs": made}, status=status.HTTP_202_ACCEPTED)


urlpatterns = [
    path("vms/<uuid:vm_id>/ha/", VMHAView.as_view(), name="api_vm_ha"),
    path("hosts/<int:host_id>/fencing/", HostFencingView.as_view(), name="api_host_fencing"),
    path(
        "hosts/<int:host_id>/confirm-off/",
        HostConfirmOffView.as_view(),
        name="api_host_confirm_off",
    ),
]
