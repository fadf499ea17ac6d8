"""What the form pages share: service errors onto the form, 400 when it has errors."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from panel.exceptions import ServiceError


def add_service_error(form: forms.Form, exc: ServiceError) -> None:
    """Show a service's refusal on the field it names, else above the form."""
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def render_form(
    request: HttpRequest, template: str, context: dict[str, Any], form: forms.Form
) -> HttpResponse:
    """Render a form page: 400 when the form carries errors, so scripts see the refusal."""
    return render(request, template, {**context, "form": form}, status=400 if form.errors else 200)
