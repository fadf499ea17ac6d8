"""affinity-groups/ (a project's groups of VMs kept apart or together) and a host's
maintenance: hosts/{id}/drain-plan/, hosts/{id}/drain/ and hosts/{id}/activate/."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.actors import Actor
from panel.api.views import ScopedMixin, named_in_body
from panel.models import Host, Project
from panel.permissions import VIEW, get_object_for_user, require_admin
from vms.models import AffinityGroup
from vms.services import affinity, drain


class AffinityGroupSerializer(serializers.ModelSerializer):
    """A project's affinity group: apart keeps its VMs on different hosts (a create or a
    drain that cannot is refused), together puts them on one host."""

    vms = serializers.SerializerMethodField()

    class Meta:
        model = AffinityGroup
        fields = ["id", "project", "name", "kind", "vms", "created"]
        read_only_fields = ["created"]

    def get_vms(self, group: AffinityGroup) -> list[str]:
        return [str(pk) for pk in group.vms.values_list("pk", flat=True)]


MEMBER = inline_serializer("AffinityMember", {"vm": serializers.UUIDField()})


class AffinityGroupViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = AffinityGroupSerializer
    filterset_fields = ["project", "kind"]

    def base_queryset(self) -> Any:
        return AffinityGroup.objects.select_related("project")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = named_in_body(Project, request.user, request.data.get("project"), "project")
        if project is None:
            raise serializers.ValidationError({"project": ["Name the group's project."]})
        group = affinity.create_group(
            project,
            str(request.data.get("name") or ""),
            str(request.data.get("kind") or AffinityGroup.APART),
            actor=Actor.of(request),
        )
        return Response(AffinityGroupSerializer(group).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        affinity.delete_group(self.get_object(), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=MEMBER, responses={200: AffinityGroupSerializer})
    @action(detail=True, methods=["post"], url_path="add")
    def add(self, request: Request, pk: str | None = None) -> Response:
        """Add a VM of the group's project to the group."""
        return self._member(request, True)

    @extend_schema(request=MEMBER, responses={200: AffinityGroupSerializer})
    @action(detail=True, methods=["post"], url_path="remove")
    def remove(self, request: Request, pk: str | None = None) -> Response:
        """Take a VM out of the group."""
        return self._member(request, False)

    def _member(self, request: Request, member: bool) -> Response:
        group = self.get_object()
        actor = Actor.of(request)
        affinity.require_operator(actor, group.project)
        vm = affinity.vm_of(group, request.data.get("vm"), actor)
        affinity.set_member(group, vm, member, actor=actor)
        return Response(AffinityGroupSerializer(group).data)


class PlanStepSerializer(serializers.Serializer):
    """One VM of a host to drain: where it goes (target_host) and how, or why it stays."""

    vm = serializers.UUIDField()
    vm_name = serializers.CharField()
    state = serializers.CharField()
    target_host = serializers.IntegerField(allow_null=True)
    target_name = serializers.CharField()
    target_pool = serializers.IntegerField(
        allow_null=True, help_text="Where its disks are copied (null: shared storage)."
    )
    copy_storage = serializers.CharField()
    how = serializers.CharField()
    reason = serializers.CharField(help_text="Why it stays ('' when it moves).")


DRAINED = inline_serializer("DrainQueued", {"job": serializers.IntegerField()})
ACTIVE = inline_serializer(
    "HostActive", {"id": serializers.IntegerField(), "maintenance": serializers.BooleanField()}
)


def _host(request: Request, host_id: int) -> Host:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, VIEW)
    require_admin(request.user, "drain hosts or end their maintenance")
    return host


class HostDrainPlanView(APIView):
    @extend_schema(responses={200: PlanStepSerializer(many=True)})
    def get(self, request: Request, host_id: int) -> Response:
        """What a drain would do (admins): a target per VM on the host, or why it stays."""
        steps = drain.plan(_host(request, host_id), actor=Actor.of(request))
        return Response(PlanStepSerializer([asdict(s) for s in steps], many=True).data)


class HostDrainView(APIView):
    @extend_schema(request=None, responses={202: DRAINED})
    def post(self, request: Request, host_id: int) -> Response:
        """Put the host in maintenance and migrate its running VMs away, as one job."""
        job = drain.drain_host(_host(request, host_id), actor=Actor.of(request))
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)


class HostActivateView(APIView):
    @extend_schema(request=None, responses={200: ACTIVE})
    def post(self, request: Request, host_id: int) -> Response:
        """End the host's maintenance: it takes new VMs again."""
        host = drain.activate_host(_host(request, host_id), actor=Actor.of(request))
        return Response({"id": host.pk, "maintenance": host.maintenance})


urlpatterns = [
    path("hosts/<int:host_id>/drain-plan/", HostDrainPlanView.as_view(), name="host_drain_plan"),
    path("hosts/<int:host_id>/drain/", HostDrainView.as_view(), name="api_host_drain"),
    path("hosts/<int:host_id>/activate/", HostActivateView.as_view(), name="api_host_activate"),
]
