"""vms/{id}/stats/, hosts/{id}/stats/ and stats/fleet/: the latest sample, and with
?range= the history."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from panel.models import Host
from panel.permissions import VIEW, get_object_for_user, is_admin
from vms.models import VirtualMachine

from . import services

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
