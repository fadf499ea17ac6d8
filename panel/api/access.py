"""roles/, groups/ and projects/{id}/grants/: custom roles and groups (admins define them)
and the grants of a project (admins and those who hold MANAGE_PROJECT there)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.identity import access
from panel.models import Grant, Project, Role
from panel.permissions import VIEW, clean_pk, get_object_for_user, require_admin, restrict
from panel.privileges import BUILTIN_ROLES, ROLE_CHOICES

User = get_user_model()
# The VMs app depends on panel, not the reverse: its model is reached through the grant's.
VirtualMachine: Any = Grant._meta.get_field("vm").related_model


class RoleSerializer(serializers.Serializer):
    """A role: built-in ones (id null, read-only) and those admins define. privileges are
    names of the catalogue (view is always included); own_only: its holder acts only on the
    VMs and volumes they own or were granted, and creates VMs from templates only."""

    id = serializers.IntegerField(read_only=True, allow_null=True)
    name = serializers.CharField(max_length=50)
    description = serializers.CharField(required=False, allow_blank=True)
    privileges = serializers.ListField(child=serializers.ChoiceField(choices=ROLE_CHOICES))
    own_only = serializers.BooleanField(required=False, default=False)
    builtin = serializers.BooleanField(read_only=True)


def _role(role: Role) -> dict[str, Any]:
    return {
        "id": role.pk,
        "name": role.name,
        "description": role.description,
        "privileges": role.privileges,
        "own_only": role.own_only,
        "builtin": False,
    }


def _builtin(name: str) -> dict[str, Any]:
    privileges, own_only = BUILTIN_ROLES[name]
    return {
        "id": None,
        "name": name,
        "description": f"The built-in {name} role.",
        "privileges": sorted(privileges),
        "own_only": own_only,
        "builtin": True,
    }


def _valid(
    kind: type[serializers.Serializer], data: Any, *, partial: bool = False
) -> dict[str, Any]:
    """The validated data; an unknown privilege is told by name (400)."""
    checked = kind(data=data, partial=partial)
    if isinstance(data, dict) and isinstance(data.get("privileges"), list):
        access.clean_privileges(data["privileges"])  # names what is unknown, or administer
    checked.is_valid(raise_exception=True)
    return dict(checked.validated_data)


class RolesView(APIView):
    """GET every role (built-in ones first); POST defines a role (admins)."""

    @extend_schema(responses=RoleSerializer(many=True))
    def get(self, request: Request) -> Response:
        custom = [_role(role) for role in Role.objects.all()]
        return Response([_builtin(name) for name in BUILTIN_ROLES] + custom)

    @extend_schema(request=RoleSerializer, responses={201: RoleSerializer})
    def post(self, request: Request) -> Response:
        require_admin(request.user, "define roles")
        data = _valid(RoleSerializer, request.data)
        role = access.create_role(actor=Actor.of(request), **data)
        return Response(_role(role), status=status.HTTP_201_CREATED)


class RoleView(APIView):
    """GET one custom role; PATCH or DELETE it (admins; not while a grant uses it: 409)."""

    def _role(self, pk: Any) -> Role:
        role = Role.objects.filter(pk=clean_pk(Role, pk)).first()
        if role is None:
            raise Http404("Not found.")
        return role

    @extend_schema(responses=RoleSerializer)
    def get(self, request: Request, role_id: int) -> Response:
        return Response(_role(self._role(role_id)))

    @extend_schema(request=RoleSerializer, responses=RoleSerializer)
    def patch(self, request: Request, role_id: int) -> Response:
        require_admin(request.user, "change roles")
        data = _valid(RoleSerializer, request.data, partial=True)
        role = access.update_role(self._role(role_id), actor=Actor.of(request), **data)
        return Response(_role(role))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, role_id: int) -> Response:
        require_admin(request.user, "delete roles")
        access.delete_role(self._role(role_id), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupSerializer(serializers.Serializer):
    """A group of users (admins): a grant to it reaches every member."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=150)
    members = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.all(), many=True, required=False
    )


def _group(group: Group) -> dict[str, Any]:
    members = sorted(user.pk for user in group.user_set.all())
    return {"id": group.pk, "name": group.name, "members": members}


class GroupsView(APIView):
    """GET the groups; POST creates one (admins only)."""

    @extend_schema(responses=GroupSerializer(many=True))
    def get(self, request: Request) -> Response:
        require_admin(request.user, "see groups")
        return Response([_group(g) for g in Group.objects.prefetch_related("user_set")])

    @extend_schema(request=GroupSerializer, responses={201: GroupSerializer})
    def post(self, request: Request) -> Response:
        require_admin(request.user, "manage groups")
        data = _valid(GroupSerializer, request.data)
        group = access.save_group(
            None, name=data["name"], members=data.get("members"), actor=Actor.of(request)
        )
        return Response(_group(group), status=status.HTTP_201_CREATED)


class GroupView(APIView):
    """GET, PATCH (name, members) or DELETE one group (admins only)."""

    def _group(self, request: Request, pk: Any) -> Group:
        require_admin(request.user, "manage groups")
        group = Group.objects.filter(pk=clean_pk(Group, pk)).first()
        if group is None:
            raise Http404("Not found.")
        return group

    @extend_schema(responses=GroupSerializer)
    def get(self, request: Request, group_id: int) -> Response:
        return Response(_group(self._group(request, group_id)))

    @extend_schema(request=GroupSerializer, responses=GroupSerializer)
    def patch(self, request: Request, group_id: int) -> Response:
        group = self._group(request, group_id)
        data = _valid(GroupSerializer, request.data, partial=True)
        group = access.save_group(
            group,
            name=data.get("name", group.name),
            members=data.get("members"),
            actor=Actor.of(request),
        )
        return Response(_group(group))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, group_id: int) -> Response:
        access.delete_group(self._group(request, group_id), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class GrantSerializer(serializers.Serializer):
    """A role given in the project to a user or a group (one of them), on the whole
    project or on one VM of it (vm)."""

    id = serializers.IntegerField(read_only=True)
    user = serializers.IntegerField(required=False, allow_null=True)
    username = serializers.CharField(read_only=True, allow_null=True)
    group = serializers.IntegerField(required=False, allow_null=True)
    group_name = serializers.CharField(read_only=True, allow_null=True)
    role = serializers.CharField(max_length=50)
    vm = serializers.UUIDField(required=False, allow_null=True)
    created = serializers.DateTimeField(read_only=True)


def grant_data(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.pk,
        "user": grant.user_id,
        "username": grant.user.username if grant.user else None,
        "group": grant.group_id,
        "group_name": grant.group.name if grant.group else None,
        "role": grant.role_name,
        "vm": str(grant.vm_id) if grant.vm_id else None,
        "created": grant.created,
    }


def _named(model: Any, pk: Any, field: str, queryset: Any) -> Any:
    """An object named by id in the body (None when not named): 400 when there is none."""
    if pk in (None, ""):
        return None
    try:
        found = queryset.filter(pk=clean_pk(model, pk)).first()
    except Http404:
        found = None
    if found is None:
        raise ServiceError(f"No {field} with id {pk} that you can use.", field=field)
    return found


def _project(request: Request, project_id: Any) -> Project:
    return get_object_for_user(Project.objects.all(), request.user, project_id, VIEW)


def _grants(project: Project) -> Any:
    return Grant.objects.filter(project=project).select_related("user", "group", "role")


class GrantsView(APIView):
    """GET the project's grants (anyone in it); POST adds one (admins and who holds
    MANAGE_PROJECT there, within the privileges they hold on the whole project)."""

    @extend_schema(responses=GrantSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = _project(request, project_id)
        return Response([grant_data(g) for g in _grants(project)])

    @extend_schema(request=GrantSerializer, responses={201: GrantSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = _project(request, project_id)
        data = _valid(GrantSerializer, request.data)
        vms = restrict(VirtualMachine.objects.all(), request.user, VIEW)
        grant = access.add_grant(
            project,
            role=data["role"],
            user=_named(User, data.get("user"), "user", User.objects.all()),
            group=_named(Group, data.get("group"), "group", Group.objects.all()),
            vm=_named(VirtualMachine, data.get("vm"), "vm", vms),
            actor=Actor.of(request),
        )
        return Response(grant_data(grant), status=status.HTTP_201_CREATED)


class GrantView(APIView):
    """GET one grant of the project; DELETE takes it back."""

    def _grant(self, request: Request, project_id: int, grant_id: Any) -> Grant:
        grant = _grants(_project(request, project_id)).filter(pk=clean_pk(Grant, grant_id)).first()
        if grant is None:
            raise Http404("Not found.")
        return grant

    @extend_schema(responses=GrantSerializer)
    def get(self, request: Request, project_id: int, grant_id: int) -> Response:
        return Response(grant_data(self._grant(request, project_id, grant_id)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, project_id: int, grant_id: int) -> Response:
        access.remove_grant(self._grant(request, project_id, grant_id), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
