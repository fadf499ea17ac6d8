"""The networks/ endpoints: read from the database, act through the services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from networking import services
from networking.models import Network
from panel.actors import Actor
from panel.api.views import ScopedMixin
from panel.exceptions import ServiceError
from panel.models import Host
from panel.permissions import VIEW, restrict

from .serializers import (
    AutostartSerializer,
    LeaseSerializer,
    NetworkCreateSerializer,
    NetworkSerializer,
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
        network = services.create_network(host, **data, actor=Actor.of(request))
        return Response(NetworkSerializer(network).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        network = self.get_object()
        services.delete_network(network, actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _act(self, request: Request, verb: str) -> Response:
        network = services.network_action(self.get_object(), verb, actor=Actor.of(request))
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
            actor=Actor.of(request),
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
