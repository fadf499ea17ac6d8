"""My account: change my password; my projects; a link to my API tokens."""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from panel import services
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.identity import tokens
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
        "token_count": tokens.tokens_for(user).count(),
        "memberships": user.memberships.select_related("project"),
        "role_count": len(roles(user)),
    }
    return render_form(request, "panel/account.html", context, form)
