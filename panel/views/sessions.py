"""My sessions (and, for admins, a user's): where each is signed in, revoke one or all;
confirming my password for a sensitive action."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.identity import reauth, sessions
from panel.models import UserSession
from panel.permissions import get_object_for_user, get_own, is_admin
from panel.views.common import render_form

User = get_user_model()


class ReauthForm(forms.Form):
    """The password, or a second factor's code (authenticator app or recovery code): a
    user who signs in through single sign-on has no password here."""

    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(attrs={"autofocus": True, "autocomplete": "current-password"}),
    )
    code = forms.CharField(
        required=False,
        max_length=40,
        label="Or a code from your authenticator app (or a recovery code)",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text"}),
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if not data.get("password") and not data.get("code"):
            raise forms.ValidationError("Enter your password, or a code of your second factor.")
        return data


def _page(request: HttpRequest, user: object, *, own: bool) -> HttpResponse:
    current = request.session.session_key
    rows = [
        {"row": r, "browser": sessions.short_agent(r.user_agent), "this": r.session_key == current}
        for r in sessions.sessions_of(user)
    ]
    context = {
        "target": user,
        "rows": rows,
        "own": own,
        "idle_minutes": settings.PANEL_SESSION_IDLE_SECONDS // 60,
        "max_hours": f"{settings.PANEL_SESSION_MAX_SECONDS / 3600:g}",
    }
    return render(request, "panel/sessions.html", context)


def session_list(request: HttpRequest) -> HttpResponse:
    return _page(request, request.user, own=True)


@require_POST
def session_revoke(request: HttpRequest, session_id: int) -> HttpResponse:
    row = get_own(UserSession.objects.all(), request.user, session_id)
    this = row.session_key == request.session.session_key
    sessions.revoke(row, actor=Actor.of(request))
    if this:
        return redirect("login")
    messages.success(request, "That session was ended: its browser is signed out.")
    return redirect("session_list")


@require_POST
def session_revoke_all(request: HttpRequest) -> HttpResponse:
    keep = request.session.session_key if request.POST.get("keep_this") == "1" else None
    count = sessions.revoke_all(request.user, actor=Actor.of(request), keep=keep)
    if keep is None:
        return redirect("login")
    messages.success(request, f"{count} other session{'s' if count != 1 else ''} ended.")
    return redirect("session_list")


def reauth_page(request: HttpRequest) -> HttpResponse:
    form = ReauthForm(request.POST or None)
    next_url = reauth.safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "POST" and form.is_valid():
        password, code = form.cleaned_data["password"], form.cleaned_data["code"]
        refusal = reauth.confirm(request, password=password or None, code=code or None)
        if not refusal:
            messages.success(request, "Thank you: go on with what you were doing.")
            return redirect(next_url)
        form.add_error("password" if password else "code", refusal)
    context = {"next": next_url, "window_minutes": settings.PANEL_REAUTH_SECONDS // 60}
    return render_form(request, "panel/reauth.html", context, form)


def _admin_target(request: HttpRequest, user_id: int) -> object:
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators can see other users' sessions.")
    return get_object_for_user(User.objects.all(), request.user, user_id)


def user_sessions(request: HttpRequest, user_id: int) -> HttpResponse:
    return _page(request, _admin_target(request, user_id), own=False)


@require_POST
def user_session_revoke(request: HttpRequest, user_id: int, session_id: int) -> HttpResponse:
    target = _admin_target(request, user_id)
    row = get_object_or_404(UserSession, pk=session_id, user=target)
    sessions.revoke(row, actor=Actor.of(request))
    messages.success(request, f"That session of {row.user.username} was ended.")
    return redirect("user_sessions", user_id=user_id)


@require_POST
def user_sessions_revoke_all(request: HttpRequest, user_id: int) -> HttpResponse:
    target = _admin_target(request, user_id)
    keep = request.session.session_key  # an admin ending their own: this one stays
    count = sessions.revoke_all(target, actor=Actor.of(request), keep=keep)
    messages.success(request, f"{count} session{'s' if count != 1 else ''} ended.")
    return redirect("user_sessions", user_id=user_id)
