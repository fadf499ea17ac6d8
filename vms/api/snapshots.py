"""vms/{id}/snapshots/: the VM's snapshots read from the mirror; changes run as jobs."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.actors import Actor
from panel.api.pagination import PanelPagination
from panel.permissions import SNAPSHOT, VIEW, get_object_for_user
from vms.models import Snapshot, VirtualMachine
from vms.services import merges, snapshots

SNAPSHOT_JOB = inline_serializer(
    "SnapshotJobQueued", {"job": serializers.IntegerField(), "name": serializers.CharField()}
)


class SnapshotSerializer(serializers.Serializer):
    """A snapshot as GET shows it; depth is its level in the tree."""

    name = serializers.CharField()
    description = serializers.CharField()
    parent = serializers.CharField(allow_null=True)
    state = serializers.CharField()
    created = serializers.DateTimeField(allow_null=True)
    kind = serializers.CharField()
    memory = serializers.BooleanField()
    current = serializers.BooleanField()
    size = serializers.IntegerField(allow_null=True)
    depth = serializers.IntegerField()
    disks = serializers.ListField(child=serializers.DictField())


class SnapshotCreateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=1000, default=""
    )
    kind = serializers.ChoiceField(choices=snapshots.KINDS, default="internal")
    memory = serializers.BooleanField(required=False, allow_null=True, default=None)
    quiesce = serializers.BooleanField(default=False)


class RevertSerializer(serializers.Serializer):
    start = serializers.BooleanField(default=False)
    discard_later = serializers.BooleanField(
        default=False,
        help_text="External snapshots: delete the overlays and snapshots taken after this one.",
    )


def _vm(request: Request, vm_id: Any, action: str) -> VirtualMachine:
    return get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, action
    )


def _snapshot(vm: VirtualMachine, name: str) -> Snapshot:
    snapshot = Snapshot.objects.filter(vm=vm, name=name).first()
    if snapshot is None:
        raise Http404(f"{vm.name} has no snapshot named '{name}'.")
    return snapshot


def _queued(job: Any) -> Response:
    return Response({"job": job.pk, "name": job.result["name"]}, status=status.HTTP_202_ACCEPTED)


class VMSnapshotsView(APIView):
    """GET the VM's snapshots in tree order (parents first); POST takes one (a job)."""

    pagination_class = PanelPagination  # documents the page envelope GET answers with

    @extend_schema(responses=SnapshotSerializer(many=True))
    def get(self, request: Request, vm_id: Any) -> Response:
        vm = _vm(request, vm_id, VIEW)
        paginator = PanelPagination()
        page = paginator.paginate_queryset(
            Snapshot.objects.filter(vm=vm).order_by("position"), request, view=self
        )
        rows = [snapshots.serialize_snapshot(s) for s in page or []]
        return paginator.get_paginated_response(rows)

    @extend_schema(request=SnapshotCreateSerializer, responses={202: SNAPSHOT_JOB})
    def post(self, request: Request, vm_id: Any) -> Response:
        vm = _vm(request, vm_id, SNAPSHOT)
        params = SnapshotCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        job = snapshots.take_snapshot(vm, actor=Actor.of(request), **params.validated_data)
        return _queued(job)


class VMSnapshotView(APIView):
    """GET one snapshot; DELETE removes it (children move up) or, with ?children=true,
    it and everything below it."""

    @extend_schema(responses=SnapshotSerializer)
    def get(self, request: Request, vm_id: Any, name: str) -> Response:
        vm = _vm(request, vm_id, VIEW)
        return Response(snapshots.serialize_snapshot(_snapshot(vm, name)))

    @extend_schema(parameters=[OpenApiParameter("children", bool)], responses={202: SNAPSHOT_JOB})
    def delete(self, request: Request, vm_id: Any, name: str) -> Response:
        vm = _vm(request, vm_id, SNAPSHOT)
        snapshot = _snapshot(vm, name)
        children = request.query_params.get("children", "").lower() in {"1", "true", "yes"}
        job = snapshots.delete_snapshot(
            vm, snapshot.name, children=children, actor=Actor.of(request)
        )
        return _queued(job)


class VMSnapshotRevertView(APIView):
    """POST {"start": bool}: revert the VM to this snapshot (a job)."""

    @extend_schema(request=RevertSerializer, responses={202: SNAPSHOT_JOB})
    def post(self, request: Request, vm_id: Any, name: str) -> Response:
        vm = _vm(request, vm_id, SNAPSHOT)
        snapshot = _snapshot(vm, name)
        params = RevertSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        job = snapshots.revert_snapshot(
            vm,
            snapshot.name,
            start=params.validated_data["start"],
            discard_later=params.validated_data["discard_later"],
            actor=Actor.of(request),
        )
        return _queued(job)


class MergeSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=merges.MERGE_MODES, default="commit")
    base = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="The image to merge down into (commit) or to keep as the backing file (pull); "
        "empty: the bottom of the chain (commit) or none (pull flattens the disk).",
    )
    top = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Commit only: the highest image to merge; empty: the active image.",
    )


class VMDiskMergeView(APIView):
    """POST {"mode": "commit"|"pull", "base", "top"}: shorten the disk's backing chain by a
    block commit or block pull (a job whose progress follows the block job)."""

    @extend_schema(request=MergeSerializer, responses={202: SNAPSHOT_JOB})
    def post(self, request: Request, vm_id: Any, disk: str) -> Response:
        vm = _vm(request, vm_id, SNAPSHOT)
        params = MergeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        job = merges.merge_disk(vm, disk, actor=Actor.of(request), **params.validated_data)
        return _queued(job)
