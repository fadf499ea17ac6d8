"""The VM page's forms, one small view per verb: the VM fetched as one the user may
change (404 outside their scope, 403 without the right), the verb's service called with
the POST, a refusal shown as the page's error, and the page again as the answer."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from panel.exceptions import ServiceError
from panel.permissions import get_object_for_user

from .models import VirtualMachine

VMForm = Callable[[HttpRequest, VirtualMachine], None]
VMFormView = Callable[[HttpRequest, str], HttpResponse]


def vm_form(
    right: str, page: str = "vm_detail", *, denied_as_message: bool = False
) -> Callable[[VMForm], VMFormView]:
    """The view of a VM page's form whose body is apply(request, vm); the answer is a
    redirect to page; the user needs the privilege right on the VM. denied_as_message: a refusal by role found by the service (a pool
    the user may not use) is shown as the page's error instead of the 403 page."""

    def decorate(apply: VMForm) -> VMFormView:
        @require_POST
        @functools.wraps(apply)
        def view(request: HttpRequest, vm_id: str) -> HttpResponse:
            vm = get_object_for_user(
                VirtualMachine.objects.select_related("host", "project"),
                request.user,
                vm_id,
                right,
            )
            try:
                apply(request, vm)
            except ServiceError as exc:
                messages.error(request, exc.message)
            except PermissionDenied as exc:
                if not denied_as_message:
                    raise
                messages.error(request, str(exc))
            return redirect(page, vm_id=vm.pk)

        return view

    return decorate
