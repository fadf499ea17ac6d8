"""vms/{id}/stats/ and hosts/{id}/stats/: the latest sample and ?range= history."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.models import Host
from panel.permissions import VIEW, get_object_for_user
from vms.models import VirtualMachine

from . import services

RANGE = OpenApiParameter("range", str, enum=["1h", "1d", "30d"], required=False)


class VMStatsView(APIView):
    """GET the VM's latest usage sample; ?range=1h|1d|30d adds the history as columns."""

    @extend_schema(parameters=[RANGE], responses=dict)
    def get(self, request: Request, vm_id: Any) -> Response:
        vm = get_object_for_user(VirtualMachine.objects.all(), request.user, vm_id, VIEW)
        return Response(services.vm_stats(vm, request.query_params.get("range")))


class HostStatsView(APIView):
    """GET the host's latest usage sample; ?range=1h|1d|30d adds the history as columns."""

    @extend_schema(parameters=[RANGE], responses=dict)
    def get(self, request: Request, host_id: int) -> Response:
        host = get_object_for_user(Host.objects.all(), request.user, host_id, VIEW)
        return Response(services.host_stats(host, request.query_params.get("range")))
