"""My account: change my password, create or revoke my API token."""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from panel import services
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import roles
from panel.views.common import render_form


def account(request: HttpRequest) -> HttpResponse:
    user = cast(User, request.user)  # signed in: only the login page is open to others
    form = PasswordChangeForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.set_password(
                user,
                password=form.cleaned_data["new_password1"],
                actor=Actor.of(request),
            )
        except ServiceError as exc:
            form.add_error("new_password1", exc.message)
        else:
            update_session_auth_hash(request, user)
            messages.success(request, "Your password was changed.")
            return redirect("account")
    context = {
        "form": form,
        "has_token": Token.objects.filter(user=user).exists(),
        "new_token": request.session.pop("new_token", None),
        "memberships": user.memberships.select_related("project"),
        "role_count": len(roles(user)),
    }
    return render_form(request, "panel/account.html", context, form)


@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    token = services.create_token(request.user, actor=Actor.of(request))
    # Shown once, on the next page, then never again.
    request.session["new_token"] = token.key
    messages.success(request, "A new API token was created; the old one no longer works.")
    return redirect("account")


@require_POST
def token_revoke(request: HttpRequest) -> HttpResponse:
    try:
        services.revoke_token(request.user, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Your API token was revoked.")
    return redirect("account")
