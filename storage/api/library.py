"""The library-images/ endpoints: the image library as the user sees it; admins add
(from a URL, fetched by a job, or from a volume), change and delete images."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from panel.actors import Actor
from panel.api.views import ScopedMixin, named_in_body
from panel.exceptions import ServiceError
from panel.permissions import is_admin, project_ids, require_admin
from storage import services
from storage.models import ImageKind, LibraryImage, StoragePool, Volume


class LibraryImageSerializer(serializers.ModelSerializer):
    pool_name = serializers.CharField(source="pool.name", read_only=True)
    host = serializers.IntegerField(source="pool.host_id", read_only=True)
    projects = serializers.SerializerMethodField(
        help_text="The projects the image is shared with (a non-admin sees only theirs)."
    )

    class Meta:
        model = LibraryImage
        fields = [
            "id",
            "name",
            "kind",
            "format",
            "os_variant",
            "pool",
            "pool_name",
            "host",
            "volume",
            "sha256",
            "source_url",
            "public",
            "projects",
            "state",
            "message",
            "job",
            "created",
        ]
        read_only_fields = fields

    def get_projects(self, image: LibraryImage) -> list[int]:
        ids = [p.pk for p in image.projects.all()]
        user = self.context["request"].user if "request" in self.context else None
        if is_admin(user):
            return ids
        mine = set(project_ids(user))
        return [pk for pk in ids if pk in mine]


class LibraryImageCreateSerializer(serializers.Serializer):
    """Input of POST library-images/: from a URL (with sha256 or sums_url), or a volume."""

    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=ImageKind.choices)
    format = serializers.CharField(
        max_length=20,
        required=False,
        allow_blank=True,
        default="",
        help_text="raw for an ISO; qcow2 or raw for a cloud image (the file is checked against it).",
    )
    os_variant = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    public = serializers.BooleanField(required=False, default=False)
    projects = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    pool = serializers.IntegerField(required=False, help_text="Where a URL's image goes.")
    url = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    sha256 = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    sums_url = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    volume = serializers.IntegerField(
        required=False, help_text="Publish this volume (of no project) instead of a URL."
    )


class LibraryImageUpdateSerializer(serializers.Serializer):
    os_variant = serializers.CharField(max_length=100, required=False, allow_blank=True)
    public = serializers.BooleanField(required=False)
    projects = serializers.ListField(child=serializers.IntegerField(), required=False)


def image_spec(data: dict[str, Any]) -> services.ImageSpec:
    return services.ImageSpec(
        name=data["name"].strip(),
        kind=data["kind"],
        format=data["format"].strip(),
        os_variant=data["os_variant"].strip(),
        public=data["public"],
        projects=services.parse_projects(data["projects"]),
    )


def add_image(data: dict[str, Any], user: Any, actor: Actor) -> LibraryImage:
    """An image added as data says: from a volume, or from a URL into a pool."""
    spec = image_spec(data)
    if data.get("volume") is not None:
        volume = named_in_body(Volume, user, data["volume"], "volume")
        return services.add_from_volume(volume, spec, actor=actor)
    if not data["url"].strip():
        raise ServiceError("Give the image's URL, or the volume to publish.", field="url")
    pool = named_in_body(StoragePool, user, data.get("pool"), "pool")
    if pool is None:
        raise ServiceError("Choose the pool the image goes into.", field="pool")
    return services.add_from_url(
        pool, spec, url=data["url"], sha256=data["sha256"], sums_url=data["sums_url"], actor=actor
    )


class LibraryImageViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = LibraryImageSerializer
    filterset_fields = ["kind", "state", "pool", "public"]
    search_fields = ["name", "os_variant"]
    ordering_fields = ["name", "created"]
    ordering = ["name"]

    def base_queryset(self) -> QuerySet:
        return LibraryImage.objects.select_related("pool").prefetch_related("projects")

    @extend_schema(request=LibraryImageCreateSerializer, responses={201: LibraryImageSerializer})
    def create(self, request: Request) -> Response:
        require_admin(request.user, "add images to the library")
        params = LibraryImageCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        image = add_image(params.validated_data, request.user, Actor.of(request))
        data = LibraryImageSerializer(image, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=LibraryImageUpdateSerializer, responses=LibraryImageSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        image = self.get_object()
        require_admin(request.user, "change library images")
        params = LibraryImageUpdateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        projects = data.get("projects")
        image = services.update_image(
            image,
            os_variant=data.get("os_variant"),
            public=data.get("public"),
            projects=services.parse_projects(projects) if projects is not None else None,
            actor=Actor.of(request),
        )
        return Response(LibraryImageSerializer(image, context={"request": request}).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.delete_image(self.get_object(), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
