"""REST endpoints for users, projects, members, hosts, jobs and the audit log.

Each viewset restricts its queryset through panel.permissions and calls the
same services as the pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from panel import audit, jobs, services, throttle, tlscerts
from panel.actors import Actor, client_ip
from panel.choices import AuditResult, Via
from panel.exceptions import ServiceError
from panel.identity import factors, tokens
from panel.identity.enforcement import SET_UP_FIRST
from panel.identity.reauth import PASSWORD_HEADER, require_recent_auth
from panel.models import AuditEvent, Host, Job, Membership, Project
from panel.permissions import (
    ADMINISTER,
    AUDIT,
    MANAGE_PROJECT,
    VIEW,
    get_object_for_user,
    is_admin,
    restrict,
    visible_audit_events,
    visible_hosts,
    visible_jobs,
)
from panel.services import host_keys, host_tls

from .filters import AuditEventFilter
from .serializers import (
    AcceptHostKeySerializer,
    AuditEventSerializer,
    CertificateUploadSerializer,
    HostCertificatesSerializer,
    HostKeySerializer,
    HostSerializer,
    JobSerializer,
    MembershipSerializer,
    MigrationAddressSerializer,
    PanelSSHKeySerializer,
    ProjectSerializer,
    UserSerializer,
)

User = get_user_model()
JOB_QUEUED = inline_serializer("JobQueued", {"job": serializers.IntegerField()})
# A sensitive request (panel.identity.reauth) proves its user again with this header.
REAUTH_PARAMETER = OpenApiParameter(
    PASSWORD_HEADER,
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Your password, to confirm this sensitive action. Needed with a token, and "
    "with a browser session whose sign-in or confirmation is older than PANEL_REAUTH_SECONDS "
    "(5 minutes); without it the answer is a 403 saying so. Wrong passwords count toward "
    "the login throttle.",
)


@extend_schema(
    request=inline_serializer(
        "TokenRequest",
        {
            "username": serializers.CharField(),
            "password": serializers.CharField(),
            "otp": serializers.CharField(
                required=False,
                help_text="For a user with a second factor: the current code of the "
                "authenticator app, or one of the user's recovery codes (used up).",
            ),
        },
    ),
    responses={
        200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
        401: OpenApiResponse(
            inline_serializer("SecondFactorNeeded", {"detail": serializers.CharField()}),
            description="The password was right but the user has a second factor: send its "
            "code as otp (missing, wrong or already used).",
        ),
        403: OpenApiResponse(
            inline_serializer("SecondFactorSetUp", {"detail": serializers.CharField()}),
            description="An admin requires a second factor of this user, who has none yet: "
            "set one up in the browser first (Two factors page).",
        ),
        429: OpenApiResponse(
            inline_serializer("Throttled", {"detail": serializers.CharField()}),
            description="Too many failed attempts for this user from this address, or from "
            "this address whatever the user (PANEL_LOGIN_FAILURES, PANEL_LOGIN_ADDRESS_FAILURES "
            "in PANEL_LOGIN_WINDOW_SECONDS); wait. Behind a proxy listed in "
            "PANEL_TRUSTED_PROXIES the address is the client's from X-Forwarded-For.",
        ),
    },
)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def obtain_token(request: Request) -> Response:
    """Trade a username and password for a new API token (throttled like the login page).

    Each call makes a new named token ("API token", "API token 2"...) with no expiry and
    all of the user's rights; earlier ones keep working until revoked (tokens/)."""
    if not isinstance(request.data, Mapping):
        return Response(
            {"detail": 'Send an object: {"username": "...", "password": "..."}.'}, status=400
        )
    username = str(request.data.get("username", ""))
    ip = client_ip(request)
    refused = throttle.attempt(username, ip)
    if refused:
        return Response({"detail": refused.message}, status=429)
    user = authenticate(
        request._request, username=username, password=str(request.data.get("password", ""))
    )
    if user is None:
        return _wrong_password(username, ip)
    if refusal := _second_factor_refusal(request, user, ip):
        return refusal
    throttle.succeeded(username, ip)
    made = tokens.create_token(user, actor=Actor(user, ip, Via.API))
    return Response({"token": made.key})


def _second_factor_refusal(request: Request, user: Any, ip: str | None) -> Response | None:
    """A token request of a user with a second factor without its right code (the attempt
    stays counted by the throttle), or of one who must set one up first; else None."""
    if factors.needs_set_up(user):
        return Response({"detail": SET_UP_FIRST}, status=403)
    if not factors.has_second_factor(user):
        return None
    otp = str(request.data.get("otp", "") or "")
    actor = Actor(None, ip, Via.API)
    if not otp:
        detail = (
            "This user has a second factor: send the authenticator app's current code "
            '(or a recovery code) as "otp" with the username and password.'
        )
        return Response({"detail": detail}, status=401)
    if not factors.verify_code(user, otp, actor=Actor(user, ip, Via.API)):
        audit.record(
            actor,
            "login.second_factor_failed",
            user.get_username(),
            result=AuditResult.DENIED,
            detail="API token",
        )
        detail = 'The "otp" code is wrong or was used already: send the current one.'
        return Response({"detail": detail}, status=401)
    audit.record(Actor(user, ip, Via.API), "login.second_factor", user, detail="API token")
    return None


def _wrong_password(username: str, ip: str | None) -> Response:
    """A refused token request, audited as a failed login."""
    actor = Actor(None, ip, Via.API)
    audit.record(actor, "login.failed", username, result=AuditResult.DENIED, detail="API token")
    return Response({"detail": "Wrong username or password."}, status=400)


def named_in_body(model: type[Model], user: Any, pk: Any, field: str) -> Any:
    """An object the user names by id in a request body (None when not named): a 400
    naming the field when it is out of their scope."""
    if pk in (None, ""):
        return None
    try:
        return get_object_for_user(model._default_manager.all(), user, pk, VIEW)
    except Http404:
        raise ServiceError(f"No {field} with id {pk} that you can use.", field=field) from None


class ScopedMixin:
    """get_object() through panel.permissions: 404 out of scope, 403 not allowed."""

    request: Request
    kwargs: dict[str, Any]
    lookup_field = "pk"

    def base_queryset(self) -> QuerySet:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        return restrict(self.base_queryset(), self.request.user, VIEW)

    def get_object_for(self, action_name: str = VIEW) -> Any:
        return get_object_for_user(
            self.base_queryset(), self.request.user, self.kwargs["pk"], action_name
        )

    def get_object(self) -> Any:
        return self.get_object_for(VIEW)


class UserViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = UserSerializer
    search_fields = ["username", "email"]
    ordering_fields = ["username", "date_joined"]

    def base_queryset(self) -> QuerySet:
        return User.objects.order_by("username")

    def perform_create(self, serializer: UserSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = services.create_user(
            username=data["username"],
            password=data["password"],
            email=data.get("email", ""),
            is_admin=data.get("is_superuser", False),
            actor=Actor.of(self.request),
        )

    @extend_schema(parameters=[REAUTH_PARAMETER])
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators can create users.")
        require_recent_auth(request)
        return super().create(request, *args, **kwargs)


class ProjectViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ProjectSerializer
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def base_queryset(self) -> QuerySet:
        return Project.objects.all()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators can create projects.")
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: ProjectSerializer) -> None:
        data = serializer.validated_data
        project = services.create_project(
            name=data["name"],
            description=data.get("description", ""),
            quota=data.get("quota"),
            actor=Actor.of(self.request),
        )
        if "allowed_hosts" in data or data.get("require_second_factor"):
            services.update_project(
                project,
                allowed_hosts=data.get("allowed_hosts"),
                require_second_factor=data.get("require_second_factor"),
                actor=Actor.of(self.request),
            )
        serializer.instance = project

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators can change projects.")
        serializer = self.get_serializer(project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.update_project(
            project,
            name=data.get("name"),
            description=data.get("description"),
            quota=data.get("quota"),
            allowed_hosts=data.get("allowed_hosts"),
            require_second_factor=data.get("require_second_factor"),
            actor=Actor.of(request),
        )
        return Response(self.get_serializer(project).data)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not kwargs.get("partial"):
            return Response({"detail": "Use PATCH to change a project."}, status=405)
        return super().update(request, *args, **kwargs)

    @extend_schema(request=MembershipSerializer, responses=MembershipSerializer(many=True))
    @action(
        detail=True, methods=["get", "post", "delete"], url_path="members", pagination_class=None
    )
    def members(self, request: Request, pk: str | None = None) -> Response:
        """List members (anyone in the project); add or remove them (admins, operators)."""
        if request.method == "GET":
            project = self.get_object()
            qs = Membership.objects.filter(project=project).select_related("user")
            return Response(MembershipSerializer(qs, many=True).data)
        project = self.get_object_for(MANAGE_PROJECT)
        if request.method == "DELETE":
            return self._remove_member(request, project)
        serializer = MembershipSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.add_member(
            project,
            user=serializer.validated_data["user"],
            role=serializer.validated_data["role"],
            actor=Actor.of(request),
        )
        return Response(MembershipSerializer(membership).data, status=201)

    def _remove_member(self, request: Request, project: Project) -> Response:
        user_id = request.data.get("user") or request.query_params.get("user")
        user = (
            get_object_or_404(User, pk=user_id, memberships__project=project)
            if str(user_id).isdigit()
            else None
        )
        if user is None:
            return Response({"user": ["Give the id of a member to remove."]}, status=400)
        services.remove_member(project, user=user, actor=Actor.of(request))
        return Response(status=204)


class HostViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = HostSerializer
    ordering_fields = ["name", "state", "created"]
    filterset_fields = ["state", "domain_type"]

    @property
    def search_fields(self) -> list[str]:
        # A search by URI would let anyone else read it a few letters at a time.
        request = getattr(self, "request", None)
        return ["name", "uri"] if request is not None and is_admin(request.user) else ["name"]

    def base_queryset(self) -> QuerySet:
        return Host.objects.all()

    def get_queryset(self) -> QuerySet:
        return visible_hosts(self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators can manage hosts.")
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: HostSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = services.add_host(
            name=data["name"],
            uri=data["uri"],
            actor=Actor.of(self.request),
            certificates={f: data[f] for f in tlscerts.FIELDS if f in data},
            ssh_fingerprint=serializer.validated_data.get("ssh_host_key_fingerprint", ""),
            migration_address=data.get("migration_address", ""),
        )

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        host = self.get_object_for(ADMINISTER)
        services.delete_host(host, actor=Actor.of(request))
        return Response(status=204)

    @extend_schema(request=None, responses={202: JOB_QUEUED})
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, pk: str | None = None) -> Response:
        """Full inventory reconcile and host check, as a job."""
        job = services.refresh_host(self.get_object_for(ADMINISTER), actor=Actor.of(request))
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=CertificateUploadSerializer,
        responses={200: HostCertificatesSerializer},
    )
    @action(detail=True, methods=["post"])
    def certificates(self, request: Request, pk: str | None = None) -> Response:
        """Replace a qemu+tls host's certificates: the panel connects with the new ones
        first and keeps the old ones until the host accepts them (400 naming the cause)."""
        host = self.get_object_for(ADMINISTER)
        upload = CertificateUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        row = host_tls.replace_certificates(host, upload.validated_data, actor=Actor.of(request))
        return Response(HostCertificatesSerializer(row).data)

    @extend_schema(request=MigrationAddressSerializer, responses=HostSerializer)
    @action(detail=True, methods=["post"], url_path="migration-address")
    def migration_address(self, request: Request, pk: str | None = None) -> Response:
        """Set or clear where other hosts reach this one for migrations (admins)."""
        host = self.get_object_for(ADMINISTER)
        body = MigrationAddressSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        address = body.validated_data["migration_address"]
        host = services.set_migration_address(host, address, actor=Actor.of(request))
        return Response(HostSerializer(host, context={"request": request}).data)

    @extend_schema(request=None, responses=PanelSSHKeySerializer)
    @action(detail=False, methods=["get"], url_path="ssh-key")
    def ssh_key(self, request: Request) -> Response:
        """The panel's SSH public key, to add to authorized_keys on a qemu+ssh host."""
        return Response({"authorized_keys": host_keys.panel_public_key(Actor.of(request))})

    @extend_schema(request=HostKeySerializer, responses=HostKeySerializer)
    @action(detail=False, methods=["post"], url_path="scan-key")
    def scan_key(self, request: Request) -> Response:
        """The SSH host key a qemu+ssh host offers now (read without logging in), for an
        admin to check on the host before adding it with its fingerprint."""
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators can manage hosts.")
        uri = HostKeySerializer(data=request.data)
        uri.is_valid(raise_exception=True)
        key = host_keys.scan_host_key(uri.validated_data["uri"], actor=Actor.of(request))
        return Response({"key_type": key.key_type, "fingerprint": key.fingerprint})

    @extend_schema(request=AcceptHostKeySerializer, responses=HostSerializer)
    @action(detail=True, methods=["post"], url_path="accept-key")
    def accept_key(self, request: Request, pk: str | None = None) -> Response:
        """Pin the new SSH host key a host offers (after an admin checked it), and refresh it."""
        host = self.get_object_for(ADMINISTER)
        body = AcceptHostKeySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        host = host_keys.accept_host_key(
            host, body.validated_data["fingerprint"], actor=Actor.of(request)
        )
        services.refresh_host(host, actor=Actor.of(request))
        return Response(HostSerializer(host, context={"request": request}).data)


class JobViewSet(ScopedMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = JobSerializer
    filterset_fields = ["state", "kind", "host", "project"]
    ordering_fields = ["created", "state"]
    search_fields = ["target", "kind"]

    def base_queryset(self) -> QuerySet:
        return Job.objects.select_related("user", "host")

    def get_queryset(self) -> QuerySet:
        return visible_jobs(self.request.user)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = services.cancel_job(self.get_object_for(AUDIT), actor=Actor.of(request))
        return Response(jobs.serialize(job))


class AuditEventViewSet(ScopedMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    search_fields = ["target", "action", "username", "detail"]
    ordering_fields = ["time"]

    def base_queryset(self) -> QuerySet:
        return AuditEvent.objects.select_related("project")

    def get_queryset(self) -> QuerySet:
        return visible_audit_events(self.request.user)
