"""My API tokens (list, create with the key shown once, revoke) and, for admins, any
user's tokens with revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.identity import tokens
from panel.identity.reauth import recent_auth_required
from panel.identity.token_forms import TokenForm
from panel.permissions import require_admin
from panel.views.common import add_service_error, render_form

KEY_SHOWN_ONCE = "new_api_token"


def _page(request: HttpRequest, form: TokenForm) -> HttpResponse:
    context = {
        "owner": request.user,
        "tokens": [tokens.describe(t) for t in tokens.tokens_for(request.user)],
        "new_key": request.session.pop(KEY_SHOWN_ONCE, None),
    }
    return render_form(request, "panel/token_list.html", context, form)


@require_GET
def token_list(request: HttpRequest) -> HttpResponse:
    return _page(request, TokenForm())


@require_POST
@recent_auth_required
def token_add(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            made = tokens.create_token(request.user, actor=Actor.of(request), **form.spec())
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            request.session[KEY_SHOWN_ONCE] = made.key  # shown on the next page, then gone
            messages.success(request, f"Token {made.token.name} created.")
            return redirect("token_list")
    return _page(request, form)


@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = tokens.get_token(request.user, token_id, anyone=True)
    try:
        tokens.revoke_token(token, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token {token.name} was revoked.")
    if token.user_id != request.user.pk:
        return redirect("user_tokens", user_id=token.user_id)
    return redirect("token_list")


@require_GET
def user_tokens(request: HttpRequest, user_id: int) -> HttpResponse:
    require_admin(request.user, "see other users' API tokens")
    owner = get_object_or_404(get_user_model(), pk=user_id)
    context = {
        "owner": owner,
        "tokens": [tokens.describe(t) for t in tokens.tokens_for(request.user, owner)],
    }
    return render_form(request, "panel/token_list.html", context, TokenForm())
