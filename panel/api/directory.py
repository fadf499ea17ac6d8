"""directory-mappings/ (admins): which directory groups give which project roles.

A mapping takes effect for each member at their next login or directory sync."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from panel.actors import Actor
from panel.choices import ProjectRole
from panel.identity import directory
from panel.models import DirectoryMapping, DirectorySource, Project
from panel.permissions import clean_pk, is_admin

from .pagination import PanelPagination


class DirectoryMappingSerializer(serializers.Serializer):
    """Members of group (in source) get role in project."""

    id = serializers.IntegerField(read_only=True)
    source = serializers.ChoiceField(choices=DirectorySource.choices)
    group = serializers.CharField(
        max_length=500, help_text="LDAP: the group's DN. OpenID Connect: a groups-claim value."
    )
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all())
    role = serializers.ChoiceField(choices=ProjectRole.choices)
    created = serializers.DateTimeField(read_only=True)


def _admin_only(request: Request) -> None:
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators can map directory groups to projects.")


class DirectoryMappingViewSet(viewsets.ViewSet):
    """Directory group mappings (administrators only)."""

    serializer_class = DirectoryMappingSerializer
    pagination_class = PanelPagination  # documents the page envelope GET answers with
    queryset = DirectoryMapping.objects.none()  # the schema's: get_queryset is never used

    def _get(self, pk: Any) -> DirectoryMapping:
        _admin_only(self.request)
        found = DirectoryMapping.objects.select_related("project")
        return get_object_or_404(found, pk=clean_pk(DirectoryMapping, pk))

    @extend_schema(responses=DirectoryMappingSerializer(many=True))
    def list(self, request: Request) -> Response:
        _admin_only(request)
        paginator = PanelPagination()
        found = DirectoryMapping.objects.select_related("project")
        page = paginator.paginate_queryset(found, request, view=self) or []
        return paginator.get_paginated_response(DirectoryMappingSerializer(page, many=True).data)

    @extend_schema(responses={201: DirectoryMappingSerializer})
    def create(self, request: Request) -> Response:
        _admin_only(request)
        given = DirectoryMappingSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        mapping = directory.add_mapping(**given.validated_data, actor=Actor.of(request))
        return Response(DirectoryMappingSerializer(mapping).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(DirectoryMappingSerializer(self._get(pk)).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        directory.remove_mapping(self._get(pk), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
