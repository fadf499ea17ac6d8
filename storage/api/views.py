"""The pools/ and volumes/ endpoints: reads from the database, changes through the services."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from panel.actors import Actor
from panel.api.views import ScopedMixin, named_in_body
from panel.exceptions import ServiceError
from panel.models import Host, Job, Project
from panel.permissions import ADMINISTER, ALLOCATE_SPACE
from storage import services
from storage.models import StoragePool, Volume

from .serializers import (
    AssignSerializer,
    CopySerializer,
    PoolCreateSerializer,
    PoolSerializer,
    ResizeSerializer,
    VolumeCreateSerializer,
    VolumeSerializer,
)

JOB_QUEUED = inline_serializer("VolumeJobQueued", {"job": serializers.IntegerField()})
UPLOAD_CHUNK = 1024 * 1024


def _truthy(value: Any) -> bool:
    return str(value).lower() in {"1", "true", "yes", "on"}


class PoolViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = PoolSerializer
    filterset_fields = ["host", "type", "state"]
    search_fields = ["name"]
    ordering_fields = ["name", "capacity", "available"]
    ordering = ["host__name", "name"]

    def base_queryset(self) -> QuerySet:
        return StoragePool.objects.select_related("host")

    @extend_schema(request=PoolCreateSerializer, responses={201: PoolSerializer})
    def create(self, request: Request) -> Response:
        params = PoolCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        host = named_in_body(Host, request.user, data["host"], "host")
        pool = services.create_pool(
            host,
            data,
            actor=Actor.of(request),
            persistent=data["persistent"],
            build=data["build"],
            start=data["start"],
            autostart=data["autostart"],
        )
        return Response(PoolSerializer(pool).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("delete_target", bool)], responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        pool = self.get_object_for(ADMINISTER)
        services.delete_pool(
            pool,
            actor=Actor.of(request),
            delete_target=_truthy(request.query_params.get("delete_target", "")),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=inline_serializer(
            "PoolPatch",
            {
                "autostart": serializers.BooleanField(required=False),
                "shared_storage": serializers.BooleanField(required=False),
            },
        ),
        responses=PoolSerializer,
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Change the pool's autostart, or declare it shared storage (or not)."""
        pool = self.get_object_for(ADMINISTER)
        if not {"autostart", "shared_storage"} & set(request.data):
            raise ServiceError(
                "Only autostart and shared_storage can be changed on a pool.", field="autostart"
            )
        actor = Actor.of(request)
        if "shared_storage" in request.data:
            on = _truthy(request.data["shared_storage"])
            pool = services.set_pool_shared_storage(pool, on, actor=actor)
        if "autostart" in request.data:
            on = _truthy(request.data["autostart"])
            pool = services.set_pool_autostart(pool, on, actor=actor)
        return Response(PoolSerializer(pool).data)

    def _act(self, request: Request, verb: str) -> Response:
        pool = self.get_object_for(ADMINISTER)
        pool = services.pool_action(pool, verb, actor=Actor.of(request))
        if pool is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(PoolSerializer(pool).data)

    @extend_schema(request=None, responses=PoolSerializer)
    @action(detail=True, methods=["post"])
    def build(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "build")

    @extend_schema(request=None, responses=PoolSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "start")

    @extend_schema(request=None, responses=PoolSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "stop")

    @extend_schema(request=None, responses=PoolSerializer)
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "refresh")


def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        while True:
            chunk = await sync_to_async(
                functools.partial(next, chunks, None), thread_sensitive=False
            )()
            if chunk is None:
                return
            yield chunk

    return gen()


def _body_chunks(request: HttpRequest, length: int) -> Iterable[bytes]:
    left = length
    while left > 0:
        chunk = request.read(min(UPLOAD_CHUNK, left))
        if not chunk:
            return  # the client stopped early; the service sees the short count
        left -= len(chunk)
        yield chunk


class VolumeViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = VolumeSerializer
    filterset_fields = ["pool", "pool__host", "project", "format", "shared"]
    search_fields = ["name", "path"]
    ordering_fields = ["name", "capacity", "allocation"]
    ordering = ["pool__name", "name"]

    def base_queryset(self) -> QuerySet:
        return Volume.objects.select_related("pool__host", "project", "owner")

    @extend_schema(
        request=VolumeCreateSerializer, responses={201: VolumeSerializer, 202: JOB_QUEUED}
    )
    def create(self, request: Request) -> Response:
        """Create a volume: 201 at once, or 202 with a job for full preallocation. An
        overlay's backing_volume must be one you may change, or a shared image (403)."""
        params = VolumeCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        pool = named_in_body(StoragePool, request.user, data["pool"], "pool")
        project = named_in_body(Project, request.user, data["project"], "project")
        backing = named_in_body(Volume, request.user, data["backing_volume"], "backing_volume")
        result = services.create_volume(
            pool,
            name=data["name"],
            format=data["format"],
            capacity_gib=data["capacity_gib"],
            preallocation=data["preallocation"],
            backing_volume=backing,
            project=project,
            actor=Actor.of(request),
        )
        if isinstance(result, Job):
            return Response({"job": result.pk}, status=status.HTTP_202_ACCEPTED)
        return Response(VolumeSerializer(result).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        volume = self.get_object_for(ALLOCATE_SPACE)
        services.delete_volume(volume, actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=inline_serializer("VolumePatch", {"shared": serializers.BooleanField()}),
        responses=VolumeSerializer,
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        volume = self.get_object()
        if "shared" not in request.data:
            raise ServiceError("Only shared can be changed on a volume.", field="shared")
        volume = services.set_shared(
            volume,
            _truthy(request.data["shared"]),
            actor=Actor.of(request),
        )
        return Response(VolumeSerializer(volume).data)

    @extend_schema(
        request=AssignSerializer,
        responses=VolumeSerializer,
        description="Admins only. A volume found on a host (format_source 'found': its "
        "format is only libvirt's guess from the content) can be used for nothing until "
        "assigned: it joins the project (counted against its disk quota; null: it stays "
        "the admins', e.g. an image to publish as shared) with the format the admin "
        "declares, once its header is checked as that format. Refused (400) "
        "when the content is another format, or names any file (backing file, json: "
        "backing, external data file, VMDK extent) but a volume of that project in the "
        "same pool; the refusal is audited.",
    )
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, pk: str | None = None) -> Response:
        volume = self.get_object()
        params = AssignSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        project = named_in_body(Project, request.user, data["project"], "project")
        volume = services.assign_volume(volume, project, data["format"], actor=Actor.of(request))
        return Response(VolumeSerializer(volume).data)

    @extend_schema(request=ResizeSerializer, responses=VolumeSerializer)
    @action(detail=True, methods=["post"])
    def resize(self, request: Request, pk: str | None = None) -> Response:
        volume = self.get_object_for(ALLOCATE_SPACE)
        params = ResizeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        volume = services.resize_volume(
            volume,
            params.validated_data["capacity_gib"],
            shrink=params.validated_data["shrink"],
            actor=Actor.of(request),
        )
        return Response(VolumeSerializer(volume).data)

    def _copy(self, request: Request, convert: bool) -> Response:
        volume = self.get_object()
        services.may_copy(Actor.of(request), volume, convert=convert)  # 403 before the body's 400
        params = CopySerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if convert and not data["format"]:
            raise ServiceError("Give the format to convert to.", field="format")
        pool = named_in_body(StoragePool, request.user, data["pool"], "pool")
        job = services.copy_volume(
            volume,
            name=data["name"],
            format=data["format"] or None,
            target_pool=pool,
            actor=Actor.of(request),
        )
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=CopySerializer, responses={202: JOB_QUEUED})
    @action(detail=True, methods=["post"])
    def clone(self, request: Request, pk: str | None = None) -> Response:
        """Copy the volume into a new one in the same format, as a job. A copy reads the
        whole disk: it needs the right to change the volume (operators of its project,
        its owner, admins); a viewer or another member gets 403. The copy reads the volume
        as its recorded format and chain, never as its content says; a volume whose header
        names any file outside its project's volumes (backing, data file, extents), or one
        found on the host and not assigned, is refused (400/409, audited)."""
        return self._copy(request, convert=False)

    @extend_schema(request=CopySerializer, responses={202: JOB_QUEUED})
    @action(detail=True, methods=["post"])
    def convert(self, request: Request, pk: str | None = None) -> Response:
        """Copy the volume into a new one in another format, as a job; the same rights as
        clone."""
        return self._copy(request, convert=True)

    @extend_schema(request=None, responses={202: JOB_QUEUED})
    @action(detail=True, methods=["post"])
    def wipe(self, request: Request, pk: str | None = None) -> Response:
        volume = self.get_object_for(ALLOCATE_SPACE)
        job = services.wipe_volume(volume, actor=Actor.of(request))
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=VolumeSerializer)
    @action(detail=True, methods=["post"])
    def check(self, request: Request, pk: str | None = None) -> Response:
        volume = self.get_object()
        volume = services.check_volume(volume, actor=Actor.of(request))
        return Response(VolumeSerializer(volume).data)

    @extend_schema(request=None, responses=VolumeSerializer)
    @action(detail=True, methods=["post"])
    def info(self, request: Request, pk: str | None = None) -> Response:
        """Read qemu-img's view (format, sizes, backing chain, snapshots) now."""
        volume = services.volume_details(self.get_object())
        return Response(VolumeSerializer(volume).data)

    @extend_schema(
        request={"application/octet-stream": bytes},
        parameters=[OpenApiParameter("remove_on_failure", bool)],
        responses={202: JOB_QUEUED},
    )
    @action(detail=True, methods=["put"])
    def upload(self, request: Request, pk: str | None = None) -> Response:
        """Stream the request body into the volume through libvirt; 202 with the finished job.

        The volume's format is the one it was created with: the first bytes are checked
        against it before anything is written. Refused (400, audited, nothing written): a
        disk image sent into a raw volume (create a volume of its format), content that is
        not the volume's format, or an image whose header names any file (backing file,
        json: backing, external data file, VMDK extent) but a volume of the same project
        in the same pool."""
        volume = self.get_object_for(ALLOCATE_SPACE)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        job = services.start_upload(volume, length, actor=Actor.of(request))
        volume = services.run_upload(
            job,
            volume,
            _body_chunks(request._request, length),
            remove_on_failure=_truthy(request.query_params.get("remove_on_failure", "")),
        )
        return Response(
            {"job": job.pk, "volume": VolumeSerializer(volume).data},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> StreamingHttpResponse:
        """Stream the volume's contents. Needs the right to change the volume (operators of
        its project, its owner, admins): seeing a volume is not reading it, so a viewer or
        another member gets 403."""
        volume = self.get_object()
        _size, chunks = services.open_download(volume, actor=Actor.of(request))
        content: Any = (
            _async_chunks(chunks) if isinstance(request._request, ASGIRequest) else chunks
        )
        response = StreamingHttpResponse(content, content_type="application/octet-stream")
        response["Content-Disposition"] = f'attachment; filename="{volume.name}"'
        return response
