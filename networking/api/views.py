"""The networks/ and vms/{id}/nics/ endpoints: read from the database, act through the services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from networking import services
from networking.models import Network
from panel.api.views import ScopedMixin
from panel.audit import client_ip
from panel.exceptions import ServiceError
from panel.models import Host
from panel.permissions import CHANGE, VIEW, get_object_for_user, restrict
from vms.models import VirtualMachine

from .serializers import (
    AutostartSerializer,
    LeaseSerializer,
    NetworkCreateSerializer,
    NetworkSerializer,
    NicAttachSerializer,
    NicDetachSerializer,
    NicSerializer,
    NicUpdateSerializer,
)


class NetworkViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = NetworkSerializer
    filterset_fields = ["host", "mode", "active"]
    search_fields = ["name", "bridge"]
    ordering_fields = ["name", "mode", "host__name"]
    ordering = ["host__name", "name"]

    def base_queryset(self) -> QuerySet:
        return Network.objects.select_related("host")

    @extend_schema(request=NetworkCreateSerializer, responses={201: NetworkSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = NetworkCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        host = restrict(Host.objects.all(), request.user, VIEW).filter(pk=data.pop("host")).first()
        if host is None:
            raise ServiceError(
                "There is no such host: give the id of a host you can see.", field="host"
            )
        network = services.create_network(
            host, **data, actor=request.user, source_ip=client_ip(request)
        )
        return Response(NetworkSerializer(network).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        network = self.get_object()
        services.delete_network(network, actor=request.user, source_ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _act(self, request: Request, verb: str) -> Response:
        network = services.network_action(
            self.get_object(), verb, actor=request.user, source_ip=client_ip(request)
        )
        return Response(NetworkSerializer(network).data)

    @extend_schema(request=None, responses=NetworkSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "start")

    @extend_schema(request=None, responses=NetworkSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "stop")

    @extend_schema(request=AutostartSerializer, responses=NetworkSerializer)
    @action(detail=True, methods=["post"])
    def autostart(self, request: Request, pk: str | None = None) -> Response:
        network = self.get_object()  # out of scope: 404 before any look at the body
        params = AutostartSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        network = services.set_network_autostart(
            network,
            params.validated_data["enabled"],
            actor=request.user,
            source_ip=client_ip(request),
        )
        return Response(NetworkSerializer(network).data)

    @extend_schema(responses=LeaseSerializer(many=True))
    @action(detail=True, methods=["get"])
    def leases(self, request: Request, pk: str | None = None) -> Response:
        """The network's DHCP leases, read from its host now (like virsh net-dhcp-leases)."""
        network = self.get_object()
        if network.active and network.carries_ip:
            services.refresh_leases(network)
        return Response(
            LeaseSerializer(services.leases_for_user(network, request.user), many=True).data
        )


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
        return Response(NicSerializer(services.vm_nics(vm), many=True).data)

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
        vm = self._vm(request, vm_id, CHANGE)
        params = NicAttachSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        network, network_id = None, data.pop("network")
        if network_id is not None:
            network = (
                restrict(Network.objects.select_related("host"), request.user)
                .filter(pk=network_id)
                .first()
            )
            if network is None:
                raise ServiceError(
                    "There is no such network: give the id of a network you can see.",
                    field="network",
                )
        vm, mac = services.attach_nic(
            vm, **data, network=network, actor=request.user, source_ip=client_ip(request)
        )
        nic = next(n for n in services.vm_nics(vm) if n["mac"] == mac)
        return Response(NicSerializer(nic).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=NicDetachSerializer, responses={204: None})
    def delete(self, request: Request, vm_id: Any, mac: str = "") -> Response:
        vm = self._vm(request, vm_id, CHANGE)
        params = NicDetachSerializer(data={**request.query_params.dict(), **(request.data or {})})
        params.is_valid(raise_exception=True)
        data = params.validated_data
        mac = mac or data["mac"]
        if not mac:
            raise ServiceError("Say which NIC to detach: give its MAC.", field="mac")
        services.detach_nic(
            vm,
            mac,
            actor=request.user,
            live=data["live"],
            persistent=data["persistent"],
            source_ip=client_ip(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class VMNicView(VMNicsView):
    """vms/{id}/nics/{mac}/: GET one NIC; PATCH {"link_up"} sets its link; DELETE detaches it."""

    http_method_names = ["get", "patch", "delete", "head", "options"]

    @extend_schema(responses=NicSerializer, operation_id="vms_nic_retrieve")
    def get(self, request: Request, vm_id: Any, mac: str = "") -> Response:  # type: ignore[override]
        vm = self._vm(request, vm_id, VIEW)
        for nic in services.vm_nics(vm):
            if nic["mac"] == mac.lower():
                return Response(NicSerializer(nic).data)
        return Response({"detail": "Not found."}, status=404)

    @extend_schema(
        request=NicUpdateSerializer, responses=NicSerializer, operation_id="vms_nic_update"
    )
    def patch(self, request: Request, vm_id: Any, mac: str) -> Response:
        vm = self._vm(request, vm_id, CHANGE)
        params = NicUpdateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        vm = services.set_nic_link(
            vm,
            mac,
            params.validated_data["link_up"],
            actor=request.user,
            source_ip=client_ip(request),
        )
        mac = services.normalize_mac(mac)
        return Response(
            NicSerializer(next(n for n in services.vm_nics(vm) if n["mac"] == mac)).data
        )

    @extend_schema(request=None, responses={204: None}, operation_id="vms_nic_destroy")
    def delete(self, request: Request, vm_id: Any, mac: str = "") -> Response:
        return super().delete(request, vm_id, mac)
