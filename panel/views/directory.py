"""Directory group mappings (admins): which directory groups give which project roles."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.identity import directory
from panel.identity.forms import DirectoryMappingForm
from panel.models import DirectoryMapping
from panel.permissions import is_admin
from panel.views.common import add_service_error, render_form


def _admin_only(request: HttpRequest) -> None:
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators can map directory groups to projects.")


def directory_mapping_list(request: HttpRequest) -> HttpResponse:
    _admin_only(request)
    form = DirectoryMappingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            mapping = directory.add_mapping(**form.cleaned_data, actor=Actor.of(request))
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Mapped {mapping.group} to {mapping.project}.")
            return redirect("directory_mapping_list")
    mappings = DirectoryMapping.objects.select_related("project")
    return render_form(request, "panel/directory_mappings.html", {"mappings": mappings}, form)


@require_POST
def directory_mapping_delete(request: HttpRequest, mapping_id: int) -> HttpResponse:
    _admin_only(request)
    mapping = get_object_or_404(DirectoryMapping.objects.select_related("project"), pk=mapping_id)
    directory.remove_mapping(mapping, actor=Actor.of(request))
    messages.success(request, f"Mapping of {mapping.group} to {mapping.project} removed.")
    return redirect("directory_mapping_list")
