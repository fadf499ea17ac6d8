"""The login's second step: a code of the authenticator app, a recovery code or a key."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from panel import throttle
from panel.actors import client_ip
from panel.exceptions import ServiceError
from panel.forms import SecondStepForm, ThrottledLoginForm
from panel.identity import factors, passkeys, second_step
from panel.models import WebAuthnCredential

WRONG_CODE = "That code is not right (or was used already). Type the one the app shows now."
NO_LOGIN = "Your login is no longer waiting for a second factor (it took too long). Log in again."


class PanelLoginView(auth_views.LoginView):
    """Django's login; a user with a second factor goes on to the second step first."""

    authentication_form = ThrottledLoginForm

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        user = form.get_user()
        if not factors.has_second_factor(user):
            return super().form_valid(form)
        second_step.begin(self.request, user, self.get_success_url())
        return redirect("login_second")


def _throttle_key(user: Any) -> str:
    return f"second-factor:{user.get_username()}"


@login_not_required
def login_second(request: HttpRequest) -> HttpResponse:
    user = second_step.pending_user(request)
    if user is None:
        return redirect("login")
    form = SecondStepForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if target := _check_code(request, user, form):
            return redirect(target)
    context = {
        "form": form,
        "has_totp": factors.has_totp(user),
        "has_keys": WebAuthnCredential.objects.filter(user=user).exists(),
    }
    status = 400 if form.errors else 200
    return render(request, "registration/second_step.html", context, status=status)


def _check_code(request: HttpRequest, user: Any, form: SecondStepForm) -> str | None:
    """Where to go when the form's code is right (the user is then logged in); else the
    form says why not."""
    ip = client_ip(request)
    if refused := throttle.attempt(_throttle_key(user), ip):
        form.add_error(None, refused.message)
        return None
    if not factors.verify_code(user, form.cleaned_data["code"]):
        second_step.failed(request, user, "code")
        form.add_error("code", WRONG_CODE)
        return None
    throttle.succeeded(_throttle_key(user), ip)
    return second_step.finish(request, user, "code")


@login_not_required
@require_POST
def login_second_key_options(request: HttpRequest) -> HttpResponse:
    user = second_step.pending_user(request)
    if user is None:
        return JsonResponse({"detail": NO_LOGIN}, status=400)
    try:
        options = passkeys.authentication_options(user, passkeys.ceremony_of(request))
    except ServiceError as exc:
        return JsonResponse({"detail": exc.message}, status=400)
    return HttpResponse(options, content_type="application/json")


@login_not_required
@require_POST
def login_second_key(request: HttpRequest) -> HttpResponse:
    user = second_step.pending_user(request)
    if user is None:
        return JsonResponse({"detail": NO_LOGIN}, status=400)
    ip = client_ip(request)
    if refused := throttle.attempt(_throttle_key(user), ip):
        return JsonResponse({"detail": refused.message}, status=429)
    try:
        credential = json.loads(request.body)
    except ValueError:
        credential = None
    if not passkeys.authenticate(user, credential, passkeys.ceremony_of(request)):
        second_step.failed(request, user, "security key")
        detail = "The key was not accepted. Try again, or use a code."
        return JsonResponse({"detail": detail}, status=400)
    throttle.succeeded(_throttle_key(user), ip)
    return JsonResponse({"redirect": second_step.finish(request, user, "security key")})
