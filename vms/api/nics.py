"""vms/{id}/nics/: the VM's NICs read from its row and live XML; attach, detach and link
act through vms.services.nics."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from networking.models import Network
from networking.services import normalize_mac
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import CONFIG_NETWORK, USE_NETWORK, VIEW, get_object_for_user, restrict
from vms.models import VirtualMachine
from vms.services import nics


class NicSerializer(serializers.Serializer):
    mac = serializers.CharField()
    type = serializers.CharField()
    source = serializers.CharField(help_text="The network (or host bridge) it joins.")
    network_id = serializers.IntegerField(allow_null=True)
    model = serializers.CharField()
    target = serializers.CharField(help_text="The host's vnet/tap device while running.")
    link_up = serializers.BooleanField()
    inbound_kib = serializers.IntegerField(allow_null=True)
    outbound_kib = serializers.IntegerField(allow_null=True)
    ips = serializers.ListField(child=serializers.CharField())


class NicAttachSerializer(serializers.Serializer):
    network = serializers.IntegerField(required=False, allow_null=True, default=None)
    bridge = serializers.CharField(required=False, allow_blank=True, default="")
    model = serializers.ChoiceField(choices=nics.NIC_MODELS, default="virtio")
    mac = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Empty: libvirt picks one. A MAC another VM already has on the network is "
        "refused (400).",
    )
    link_up = serializers.BooleanField(required=False, default=True)
    inbound_kib = serializers.IntegerField(required=False, allow_null=True, default=None)
    outbound_kib = serializers.IntegerField(required=False, allow_null=True, default=None)
    live = serializers.BooleanField(required=False, allow_null=True, default=None)
    persistent = serializers.BooleanField(required=False, allow_null=True, default=None)

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(data or {})


class NicDetachSerializer(serializers.Serializer):
    mac = serializers.CharField(required=False, default="")
    live = serializers.BooleanField(required=False, allow_null=True, default=None)
    persistent = serializers.BooleanField(required=False, allow_null=True, default=None)


class NicUpdateSerializer(serializers.Serializer):
    link_up = serializers.BooleanField()


class VMNicsView(APIView):
    """GET the VM's NICs; POST attaches one; DELETE (with {"mac"}) detaches one."""

    def _vm(self, request: Request, vm_id: Any, action_name: str) -> VirtualMachine:
        return get_object_for_user(
            VirtualMachine.objects.select_related("host", "project"),
            request.user,
            vm_id,
            action_name,
        )

    @extend_schema(responses=NicSerializer(many=True))
    def get(self, request: Request, vm_id: Any) -> Response:
        vm = self._vm(request, vm_id, VIEW)
        return Response(NicSerializer(nics.vm_nics(vm), many=True).data)

    @extend_schema(
        request=NicAttachSerializer,
        responses={201: NicSerializer},
        description="Plug a NIC in. One that a non-admin plugs into a network whose guests "
        "share a bridge (NAT, routed, isolated, open, host bridge), or that an admin plugs "
        "into a non-admin's VM, gets libvirt's clean-traffic filter: the guest may send "
        "only from the NIC's MAC and its one IPv4 address (a static DHCP host's, else its "
        "DHCP lease's), with no forged ARP and no other layer-2 traffic.",
    )
    def post(self, request: Request, vm_id: Any) -> Response:
        vm = self._vm(request, vm_id, CONFIG_NETWORK)
        params = NicAttachSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        network, network_id = None, data.pop("network")
        if network_id is not None:
            network = (
                restrict(Network.objects.select_related("host"), request.user, USE_NETWORK)
                .filter(pk=network_id)
                .first()
            )
            if network is None:
                raise ServiceError(
                    "There is no such network: give the id of a network you can see.",
                    field="network",
                )
        vm, mac = nics.attach_nic(vm, **data, network=network, actor=Actor.of(request))
        nic = next(n for n in nics.vm_nics(vm) if n["mac"] == mac)
        return Response(NicSerializer(nic).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=NicDetachSerializer, responses={204: None})
    def delete(self, request: Request, vm_id: Any, mac: str = "") -> Response:
        vm = self._vm(request, vm_id, CONFIG_NETWORK)
        params = NicDetachSerializer(data={**request.query_params.dict(), **(request.data or {})})
        params.is_valid(raise_exception=True)
        data = params.validated_data
        mac = mac or data["mac"]
        if not mac:
            raise ServiceError("Say which NIC to detach: give its MAC.", field="mac")
        nics.detach_nic(
            vm,
            mac,
            actor=Actor.of(request),
            live=data["live"],
            persistent=data["persistent"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class VMNicView(VMNicsView):
    """vms/{id}/nics/{mac}/: GET one NIC; PATCH {"link_up"} sets its link; DELETE detaches it."""

    http_method_names = ["get", "patch", "delete", "head", "options"]

    @extend_schema(responses=NicSerializer, operation_id="vms_nic_retrieve")
    def get(self, request: Request, vm_id: Any, mac: str = "") -> Response:
        vm = self._vm(request, vm_id, VIEW)
        for nic in nics.vm_nics(vm):
            if nic["mac"] == mac.lower():
                return Response(NicSerializer(nic).data)
        return Response({"detail": "Not found."}, status=404)

    @extend_schema(
        request=NicUpdateSerializer, responses=NicSerializer, operation_id="vms_nic_update"
    )
    def patch(self, request: Request, vm_id: Any, mac: str) -> Response:
        vm = self._vm(request, vm_id, CONFIG_NETWORK)
        params = NicUpdateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        vm = nics.set_nic_link(
            vm,
            mac,
            params.validated_data["link_up"],
            actor=Actor.of(request),
        )
        mac = normalize_mac(mac)
        return Response(NicSerializer(next(n for n in nics.vm_nics(vm) if n["mac"] == mac)).data)

    @extend_schema(request=None, responses={204: None}, operation_id="vms_nic_destroy")
    def delete(self, request: Request, vm_id: Any, mac: str = "") -> Response:
        return super().delete(request, vm_id, mac)
