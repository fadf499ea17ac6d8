"""REST endpoints for hosts, jobs and the audit log; each calls the same services as the UI."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.decorators import action, api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from panel import jobs, services
from panel.audit import client_ip
from panel.models import AuditEvent
from panel.permissions import is_admin, visible_hosts, visible_jobs

from .serializers import AuditEventSerializer, HostSerializer, JobSerializer


@extend_schema(
    request=inline_serializer(
        "TokenRequest", {"username": serializers.CharField(), "password": serializers.CharField()}
    ),
    responses=inline_serializer("TokenResponse", {"token": serializers.CharField()}),
)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def obtain_token(request: Request) -> Response:
    """Trade a username and password for an API token."""
    user = authenticate(
        request._request,
        username=request.data.get("username", ""),
        password=request.data.get("password", ""),
    )
    if user is None:
        return Response({"detail": "Wrong username or password."}, status=400)
    token, _ = Token.objects.get_or_create(user=user)
    return Response({"token": token.key})


class HostViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = HostSerializer
    search_fields = ["name", "uri"]
    ordering_fields = ["name", "state", "created"]
    filterset_fields = ["state", "domain_type"]

    def get_queryset(self):
        return visible_hosts(self.request.user)

    def perform_create(self, serializer: HostSerializer) -> None:
        serializer.instance = services.add_host(
            name=serializer.validated_data["name"],
            uri=serializer.validated_data["uri"],
            actor=self.request.user,
            source_ip=client_ip(self.request),
        )

    def perform_destroy(self, instance) -> None:
        services.delete_host(instance, actor=self.request.user, source_ip=client_ip(self.request))

    @extend_schema(
        request=None,
        responses={202: inline_serializer("JobQueued", {"job": serializers.IntegerField()})},
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, pk: str | None = None) -> Response:
        job = services.refresh_host(
            self.get_object(), actor=request.user, source_ip=client_ip(request)
        )
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = JobSerializer
    filterset_fields = ["state", "kind", "host"]
    ordering_fields = ["created", "state"]
    search_fields = ["target", "kind"]

    def get_queryset(self):
        return visible_jobs(self.request.user)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = services.cancel_job(
            self.get_object(), actor=request.user, source_ip=client_ip(request)
        )
        return Response(jobs.serialize(job))


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AuditEventSerializer
    filterset_fields = ["action", "result", "username"]
    search_fields = ["target", "action", "username", "detail"]
    ordering_fields = ["time"]

    def get_queryset(self):
        if is_admin(self.request.user):
            return AuditEvent.objects.all()
        return AuditEvent.objects.filter(user=self.request.user)
