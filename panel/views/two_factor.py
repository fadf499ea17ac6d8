"""My two factors: the authenticator app, recovery codes and security keys; the
admins' rule that everyone needs one."""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.identity import factors, passkeys
from panel.identity.reauth import is_recent, recent_auth_required
from panel.models import TotpDevice, WebAuthnCredential
from panel.views.common import add_service_error, render_form

NEW_CODES = "panel_new_recovery_codes"


class TotpConfirmForm(forms.Form):
    code = forms.CharField(
        max_length=10,
        label="Code from the app",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def two_factor(request: HttpRequest) -> HttpResponse:
    user = cast(User, request.user)  # signed in: only the login pages are open to others
    context = {
        "has_totp": factors.has_totp(user),
        "keys": WebAuthnCredential.objects.filter(user=user),
        "recovery_left": factors.unused_recovery_codes(user),
        "new_codes": request.session.pop(NEW_CODES, None),
        "required": factors.must_have_second_factor(user),
    }
    return render(request, "panel/two_factor.html", context)


@require_POST
def totp_start(request: HttpRequest) -> HttpResponse:
    try:
        factors.start_totp(request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("two_factor")
    return redirect("totp_confirm")


def totp_confirm(request: HttpRequest) -> HttpResponse:
    device = TotpDevice.objects.filter(user=cast(User, request.user), confirmed=False).first()
    if device is None:
        return redirect("two_factor")
    form = TotpConfirmForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = factors.confirm_totp(
                request.user, form.cleaned_data["code"], actor=Actor.of(request)
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            request.session[NEW_CODES] = codes or None
            messages.success(request, "Your authenticator app is set up.")
            return redirect("two_factor")
    uri = factors.provisioning_uri(request.user, device)
    context = {"qr": factors.qr_svg(uri), "secret": factors.device_secret(device)}
    return render_form(request, "panel/totp_setup.html", context, form)


@require_POST
@recent_auth_required
def totp_disable(request: HttpRequest) -> HttpResponse:
    try:
        factors.disable_totp(request.user, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Your authenticator app was removed.")
    return redirect("two_factor")


@require_POST
@recent_auth_required
def recovery_regenerate(request: HttpRequest) -> HttpResponse:
    try:
        codes = factors.regenerate_recovery_codes(request.user, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        request.session[NEW_CODES] = codes
        messages.success(request, "New recovery codes; the old ones no longer work.")
    return redirect("two_factor")


@require_POST
def webauthn_register_options(request: HttpRequest) -> HttpResponse:
    if factors.has_second_factor(request.user) and not is_recent(request):
        # Another factor on an account that has one: a stolen session must not add its own.
        detail = "Log in again (less than 5 minutes ago) to add another key."
        return JsonResponse({"detail": detail}, status=403)
    try:
        options = passkeys.registration_options(request.user, passkeys.ceremony_of(request))
    except ServiceError as exc:
        return JsonResponse({"detail": exc.message}, status=400)
    return HttpResponse(options, content_type="application/json")


@require_POST
def webauthn_register(request: HttpRequest) -> HttpResponse:
    body = _json_object(request)
    if body is None:
        return JsonResponse({"detail": 'Send {"name": "...", "credential": {...}}.'}, status=400)
    actor = Actor.of(request)
    ceremony = passkeys.ceremony_of(request)
    try:
        key = passkeys.register(
            request.user, body.get("credential"), str(body.get("name", "")), ceremony, actor=actor
        )
    except ServiceError as exc:
        return JsonResponse({"detail": exc.message}, status=400)
    if codes := factors.first_recovery_codes(request.user, actor=actor):
        request.session[NEW_CODES] = codes
    messages.success(request, f"Key {key.name} added.")
    return JsonResponse({"id": key.pk, "name": key.name})


def _json_object(request: HttpRequest) -> dict[str, Any] | None:
    try:
        body = json.loads(request.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@require_POST
@recent_auth_required
def webauthn_remove(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(WebAuthnCredential, pk=key_id, user=cast(User, request.user))
    try:
        passkeys.remove(request.user, key.pk, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The key was removed.")
    return redirect("two_factor")


@require_POST
def second_factor_policy(request: HttpRequest) -> HttpResponse:
    required = request.POST.get("require_second_factor") == "on"
    factors.set_policy(required, actor=Actor.of(request))
    if required:
        messages.success(request, "Everyone now needs a second factor.")
    else:
        messages.success(request, "A second factor is no longer required of everyone.")
    return redirect("user_list")
