"""vms/{id}/backups/ (take, list, delete, restore) and the backup schedules of VMs and
projects; the work runs as jobs."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.actors import Actor
from panel.api.pagination import PanelPagination
from panel.models import Project
from panel.permissions import BACKUP, VIEW, get_object_for_user, restrict
from storage.models import StoragePool
from vms.choices import ScheduleKind
from vms.models import Backup, BackupSchedule, VirtualMachine
from vms.services import backups, restores, schedules, verify

JOB = inline_serializer(
    "BackupJobQueued", {"job": serializers.IntegerField(), "backup": serializers.IntegerField()}
)


def _vm(request: Request, vm_id: Any, action: str) -> VirtualMachine:
    return get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, action
    )


def _pool(request: Request, pk: Any) -> StoragePool | None:
    """The pool the caller named, among those they may see (None when not given)."""
    if pk in (None, ""):
        return None
    pool = restrict(StoragePool.objects.select_related("host"), request.user, VIEW)
    found = pool.filter(pk=pk).first() if str(pk).isdigit() else None
    if found is None:
        raise serializers.ValidationError({"pool": [f"No pool {pk} that you may use."]})
    return found


def _page(view: APIView, request: Request, queryset: Any, serialize: Any) -> Response:
    paginator = PanelPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response([serialize(item) for item in page or []])


class BackupSerializer(serializers.Serializer):
    """A backup as GET shows it; rpo_seconds is the achieved RPO."""

    id = serializers.IntegerField()
    vm = serializers.CharField()
    vm_name = serializers.CharField()
    state = serializers.CharField()
    method = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=["full", "incremental"],
        help_text="full: every cluster of each disk; incremental: only those written since "
        "the checkpoint of its parent, the backup it builds on (restoring it reads both).",
    )
    parent = serializers.IntegerField(
        allow_null=True, help_text="The backup an incremental one builds on (null: full)."
    )
    checkpoint = serializers.CharField(
        help_text="The libvirt checkpoint made with it, where the next incremental backup "
        "starts ('' when none: offline and snapshot-method backups, raw disks)."
    )
    note = serializers.CharField(
        help_text="Why it is a full copy when it could have built on the last backup "
        "(a broken chain says what broke it); '' otherwise."
    )
    message = serializers.CharField()
    pool = serializers.IntegerField(allow_null=True)
    schedule = serializers.IntegerField(allow_null=True)
    job = serializers.IntegerField(allow_null=True)
    disks = serializers.ListField(child=serializers.DictField())
    size = serializers.IntegerField()
    duration = serializers.FloatField(allow_null=True)
    created = serializers.DateTimeField()
    consistent_at = serializers.DateTimeField(allow_null=True)
    rpo_seconds = serializers.IntegerField(allow_null=True)
    verify = serializers.ListField(
        child=serializers.DictField(),
        help_text="Per disk when taken: qemu-img check (ok, summary) and sha256, the digest "
        "of its copy's file.",
    )
    verified = serializers.DictField(
        help_text='The last verification ({} when none): {"at", "ok", "disks": [{"target", '
        '"ok", "files": [{"backup", "path", "sha256", "ok"}], "sha256" (the restored '
        'disk\'s), "same_as_before", "summary"}]}.'
    )


class BackupCreateSerializer(serializers.Serializer):
    pool = serializers.IntegerField()
    method = serializers.ChoiceField(
        choices=["", "offline", "push", "snapshot"],
        default="",
        help_text="Empty: offline when the VM is shut off, else libvirt's backup API where "
        "the host has it, else external snapshot + copy + merge.",
    )


class RestoreSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=restores.RESTORE_MODES, default="new")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    pool = serializers.IntegerField(required=False, allow_null=True, default=None)
    start = serializers.BooleanField(default=False)
    disks = serializers.ListField(
        child=serializers.CharField(max_length=32),
        required=False,
        default=list,
        max_length=64,
        help_text="In place only: the disks (targets, e.g. vdb) to restore; the others stay "
        "as they are. Empty: every disk the backup holds.",
    )


def _backup(vm: VirtualMachine, backup_id: Any) -> Backup:
    backup = (
        Backup.objects.select_related("vm__host", "vm__project", "host", "pool")
        .filter(vm_uuid=vm.pk, pk=backup_id)
        .first()
    )
    if backup is None:
        raise Http404(f"{vm.name} has no backup #{backup_id}.")
    return backup


class VMBackupsView(APIView):
    """GET the VM's backups, newest first; POST {"pool", "method"} takes one (a job)."""

    pagination_class = PanelPagination  # documents the page envelope GET answers with

    @extend_schema(responses=BackupSerializer(many=True))
    def get(self, request: Request, vm_id: Any) -> Response:
        vm = _vm(request, vm_id, VIEW)
        return _page(self, request, backups.visible_backups(vm), backups.serialize_backup)

    @extend_schema(request=BackupCreateSerializer, responses={202: JOB})
    def post(self, request: Request, vm_id: Any) -> Response:
        vm = _vm(request, vm_id, BACKUP)
        params = BackupCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        job = backups.take_backup(
            vm,
            _pool(request, params.validated_data["pool"]),
            method=params.validated_data["method"],
            actor=Actor.of(request),
        )
        return Response(
            {"job": job.pk, "backup": job.result["backup"]}, status=status.HTTP_202_ACCEPTED
        )


class VMBackupView(APIView):
    """GET one backup; DELETE removes its copies from the pool and its record."""

    @extend_schema(responses=BackupSerializer)
    def get(self, request: Request, vm_id: Any, backup_id: int) -> Response:
        vm = _vm(request, vm_id, VIEW)
        return Response(backups.serialize_backup(_backup(vm, backup_id)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, vm_id: Any, backup_id: int) -> Response:
        vm = _vm(request, vm_id, BACKUP)
        backups.delete_backup(_backup(vm, backup_id), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VMBackupRestoreView(APIView):
    """POST {"mode": "new"|"in_place", "name", "pool", "start", "disks"}: restore the backup
    into a new VM (name and pool required) or over the shut-off VM's disks, all or those
    named (a job)."""

    @extend_schema(request=RestoreSerializer, responses={202: JOB})
    def post(self, request: Request, vm_id: Any, backup_id: int) -> Response:
        vm = _vm(request, vm_id, BACKUP)
        backup = _backup(vm, backup_id)
        params = RestoreSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        job = restores.restore_backup(
            backup,
            mode=data["mode"],
            name=data["name"],
            pool=_pool(request, data["pool"]),
            start=data["start"],
            disks=data["disks"],
            actor=Actor.of(request),
        )
        return Response({"job": job.pk, "backup": backup.pk}, status=status.HTTP_202_ACCEPTED)


class VMBackupVerifyView(APIView):
    """POST: verify the backup (a job): each file its restore reads hashed and compared
    with its digest when written, then the point restored into a scratch volume of its pool
    and the disk it holds hashed; the backup's `verified` gives the outcome."""

    @extend_schema(request=None, responses={202: JOB})
    def post(self, request: Request, vm_id: Any, backup_id: int) -> Response:
        vm = _vm(request, vm_id, BACKUP)
        backup = _backup(vm, backup_id)
        job = verify.verify_backup(backup, actor=Actor.of(request))
        return Response({"job": job.pk, "backup": backup.pk}, status=status.HTTP_202_ACCEPTED)


class ScheduleSerializer(serializers.Serializer):
    """A backup or snapshot schedule: cron fields, kind, target pool and retention."""

    id = serializers.IntegerField(read_only=True)
    vm = serializers.CharField(read_only=True, allow_null=True)
    project = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=ScheduleKind.values, required=False)
    pool = serializers.IntegerField(required=False, allow_null=True)
    minute = serializers.CharField(required=False, max_length=64)
    hour = serializers.CharField(required=False, max_length=64)
    day_of_month = serializers.CharField(required=False, max_length=64)
    month_of_year = serializers.CharField(required=False, max_length=64)
    day_of_week = serializers.CharField(required=False, max_length=64)
    cron = serializers.CharField(read_only=True)
    keep_last = serializers.IntegerField(required=False, min_value=0, max_value=1000)
    keep_daily = serializers.IntegerField(required=False, min_value=0, max_value=1000)
    keep_weekly = serializers.IntegerField(required=False, min_value=0, max_value=1000)
    enabled = serializers.BooleanField(required=False)
    last_run = serializers.DateTimeField(read_only=True, allow_null=True)
    next_run = serializers.DateTimeField(read_only=True, allow_null=True)


def _schedule_data(request: Request, *, partial: bool) -> dict[str, Any]:
    params = ScheduleSerializer(data=request.data, partial=partial)
    params.is_valid(raise_exception=True)
    data = dict(params.validated_data)
    if "pool" in data:
        data["pool"] = _pool(request, data["pool"])
    return {k: v for k, v in data.items() if k in schedules.SCHEDULE_FIELDS}


class VMSchedulesView(APIView):
    """GET the VM's backup and snapshot schedules; POST adds one."""

    pagination_class = PanelPagination  # documents the page envelope GET answers with

    @extend_schema(responses=ScheduleSerializer(many=True))
    def get(self, request: Request, vm_id: Any) -> Response:
        vm = _vm(request, vm_id, VIEW)
        rows = BackupSchedule.objects.filter(vm=vm).select_related("pool")
        return _page(self, request, rows, schedules.serialize_schedule)

    @extend_schema(request=ScheduleSerializer, responses={201: ScheduleSerializer})
    def post(self, request: Request, vm_id: Any) -> Response:
        vm = _vm(request, vm_id, BACKUP)
        schedule = schedules.save_schedule(
            _schedule_data(request, partial=False),
            vm=vm,
            actor=Actor.of(request),
        )
        return Response(schedules.serialize_schedule(schedule), status=status.HTTP_201_CREATED)


class ProjectSchedulesView(APIView):
    """GET the schedules that cover every VM of the project; POST adds one (operators)."""

    pagination_class = PanelPagination  # documents the page envelope GET answers with

    def _project(self, request: Request, project_id: int) -> Project:
        return get_object_for_user(Project.objects.all(), request.user, project_id, VIEW)

    @extend_schema(responses=ScheduleSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = self._project(request, project_id)
        rows = BackupSchedule.objects.filter(project=project, vm__isnull=True)
        return _page(self, request, rows.select_related("pool"), schedules.serialize_schedule)

    @extend_schema(request=ScheduleSerializer, responses={201: ScheduleSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = self._project(request, project_id)
        schedule = schedules.save_schedule(
            _schedule_data(request, partial=False),
            project=project,
            actor=Actor.of(request),
        )
        return Response(schedules.serialize_schedule(schedule), status=status.HTTP_201_CREATED)


class ScheduleView(APIView):
    """GET, PATCH or DELETE one schedule (of a VM or a project)."""

    def _schedule(self, request: Request, schedule_id: int) -> BackupSchedule:
        schedule = schedules.schedules_for_user(request.user).filter(pk=schedule_id).first()
        if schedule is None:
            raise Http404("Not found.")
        return schedule

    @extend_schema(responses=ScheduleSerializer)
    def get(self, request: Request, schedule_id: int) -> Response:
        return Response(schedules.serialize_schedule(self._schedule(request, schedule_id)))

    @extend_schema(request=ScheduleSerializer, responses=ScheduleSerializer)
    def patch(self, request: Request, schedule_id: int) -> Response:
        schedule = schedules.save_schedule(
            _schedule_data(request, partial=True),
            schedule=self._schedule(request, schedule_id),
            actor=Actor.of(request),
        )
        return Response(schedules.serialize_schedule(schedule))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, schedule_id: int) -> Response:
        schedules.delete_schedule(self._schedule(request, schedule_id), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
