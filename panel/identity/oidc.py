"""Signing in with OpenID Connect (optional: settings PANEL_OIDC_*).

Authlib's Django client does the protocol: the endpoints and signing keys come from the
issuer's discovery document (read at the first sign-in, with a timeout), the
authorization code flow runs with PKCE, its state and nonce are kept in the session and
checked once, and the ID token's signature (RS256, the issuer's published keys), issuer,
audience and lifetime are verified. This module turns verified claims into an account:
an identity is the pair (issuer, subject), linked to one account for good, so a new
preferred_username at the provider neither makes a second account nor moves to another
one. A first sign-in never takes over a local account that has the same name: it is
refused until an admin renames or removes that account. The groups claim goes through
the directory mapping (panel.identity.directory), at every sign-in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

# Authlib ships no type information (its stubs are a package the locks do not hold).
from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped]
from authlib.integrations.base_client import (  # type: ignore[import-untyped]
    MismatchingStateError,
    OAuthError,
)
from authlib.integrations.django_client import OAuth  # type: ignore[import-untyped]
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from joserfc.errors import JoseError
from requests import RequestException

from panel import audit, throttle
from panel.actors import Actor, client_ip
from panel.choices import AuditResult, Via
from panel.identity.directory import apply_groups
from panel.models import OidcIdentity

log = logging.getLogger(__name__)

SOURCE = "oidc"
# ID tokens are accepted signed with these only, whatever the provider also offers.
ALGORITHMS = ["RS256"]


# The name the callback's answers are counted under: until the provider has answered,
# the panel does not know who signs in, so refused answers count against the address.
CALLBACK_COUNTER = "(single sign-on)"


class SignInRefused(Exception):
    """Why an OpenID Connect sign-in is refused, in words for the login page; detail is
    for the audit log."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


def configured() -> bool:
    """Whether the panel offers OpenID Connect sign-in."""
    return bool(
        settings.PANEL_OIDC_ISSUER
        and settings.PANEL_OIDC_CLIENT_ID
        and settings.PANEL_OIDC_CLIENT_SECRET
    )


_clients: dict[tuple[str, ...], Any] = {}


def client() -> Any:
    """Authlib's client for the configured provider (one per configuration, so its
    discovery document and keys are read once)."""
    key = (
        settings.PANEL_OIDC_ISSUER,
        settings.PANEL_OIDC_CLIENT_ID,
        settings.PANEL_OIDC_CLIENT_SECRET,
        settings.PANEL_OIDC_SCOPES,
    )
    if key not in _clients:
        _clients[key] = OAuth().register(
            "panel",
            client_id=settings.PANEL_OIDC_CLIENT_ID,
            client_secret=settings.PANEL_OIDC_CLIENT_SECRET,
            server_metadata_url=f"{settings.PANEL_OIDC_ISSUER}/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.PANEL_OIDC_SCOPES,
                "code_challenge_method": "S256",
                "default_timeout": settings.PANEL_OIDC_TIMEOUT,
            },
        )
    return _clients[key]


def _provider(app: Any) -> dict[str, Any]:
    """The provider's discovery document, checked to be the configured issuer's."""
    try:
        metadata: dict[str, Any] = app.load_server_metadata()
    except (RequestException, ValueError) as exc:
        raise SignInRefused(
            f"{settings.PANEL_OIDC_NAME} cannot be reached now; try again in a minute, or "
            "log in with a password.",
            f"discovery document of {settings.PANEL_OIDC_ISSUER}: {exc}",
        ) from exc
    if str(metadata.get("issuer", "")).rstrip("/") != settings.PANEL_OIDC_ISSUER:
        raise SignInRefused(
            f"{settings.PANEL_OIDC_NAME} is not set up correctly here (the provider names "
            "another issuer); ask an admin to check PANEL_OIDC_ISSUER.",
            f"the discovery document names issuer {metadata.get('issuer')!r}",
        )
    metadata["id_token_signing_alg_values_supported"] = ALGORITHMS
    return metadata


def authorization_redirect(request: HttpRequest, redirect_uri: str) -> HttpResponse:
    """The redirect to the provider's login, with a fresh state, nonce and PKCE verifier
    kept in the session."""
    app = client()
    _provider(app)
    try:
        response: HttpResponse = app.authorize_redirect(request, redirect_uri)
    except (AuthlibBaseError, RuntimeError) as exc:
        raise SignInRefused(
            f"{settings.PANEL_OIDC_NAME} is not set up correctly here; ask an admin.", str(exc)
        ) from exc
    return response


def _checks(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What an ID token's claims must say: issued by the provider, for this client."""
    return {
        "iss": {"essential": True, "values": [metadata["issuer"]]},
        "aud": {"essential": True, "values": [settings.PANEL_OIDC_CLIENT_ID]},
    }


def verify_id_token(token: Mapping[str, Any], nonce: str) -> dict[str, Any]:
    """The claims of the token response's ID token once its signature (the provider's
    keys), issuer, audience (this client), lifetime and nonce are checked."""
    app = client()
    metadata = _provider(app)
    try:
        claims = app.parse_id_token(dict(token), nonce=nonce, claims_options=_checks(metadata))
    except (JoseError, AuthlibBaseError, ValueError, RequestException) as exc:
        raise SignInRefused(
            f"The answer of {settings.PANEL_OIDC_NAME} failed its checks, so nobody was "
            "signed in. Try again; if it happens again, ask an admin.",
            f"ID token refused: {type(exc).__name__}: {exc}",
        ) from exc
    if claims is None:
        raise SignInRefused(
            f"{settings.PANEL_OIDC_NAME} sent no ID token; ask an admin to check the scopes "
            "(PANEL_OIDC_SCOPES must include openid).",
            "no id_token in the token response",
        )
    return dict(claims)


def complete(request: HttpRequest) -> User:
    """The account the provider's answer on the callback signs in to (state checked and
    used up, code exchanged once, ID token verified); SignInRefused otherwise, audited.
    Refused answers count against the address as failed logins do (panel.throttle)."""
    actor = Actor(None, client_ip(request), Via.PAGE)
    try:
        if refused := throttle.attempt(CALLBACK_COUNTER, actor.address):
            raise SignInRefused(refused.message, "throttled")
        user = account_for(_verified_claims(request), actor=actor)
    except SignInRefused as exc:
        log.info("OpenID Connect sign-in refused: %s", exc.detail)
        audit.record(
            actor, "login.failed", "OIDC", result=AuditResult.DENIED, detail=exc.detail[:1000]
        )
        raise
    throttle.succeeded(CALLBACK_COUNTER, actor.address)
    return user


def _verified_claims(request: HttpRequest) -> dict[str, Any]:
    app = client()
    metadata = _provider(app)
    name = settings.PANEL_OIDC_NAME
    try:
        # Authlib checks the state against the session, uses it up and exchanges the code
        # with the PKCE verifier; the ID token is verified just below, with our options.
        token = app.authorize_access_token(request, claims_options=_checks(metadata))
    except MismatchingStateError as exc:
        raise SignInRefused(
            "This sign-in answer does not belong to a sign-in started here (or was used "
            f'already). Start again with "Sign in with {name}".',
            "state unknown or already used",
        ) from exc
    except OAuthError as exc:
        raise SignInRefused(_refusal(exc), f"{exc.error}: {exc.description}") from exc
    except (JoseError, AuthlibBaseError, ValueError, RequestException) as exc:
        raise SignInRefused(
            f"The answer of {name} failed its checks, so nobody was signed in. Try again; "
            "if it happens again, ask an admin.",
            f"{type(exc).__name__}: {exc}",
        ) from exc
    # Authlib verifies an ID token only with the nonce of an openid scope: without both,
    # there is nothing verified to sign in with.
    if "userinfo" not in token:
        raise SignInRefused(
            f"{name} sent no ID token; ask an admin to check PANEL_OIDC_SCOPES (openid).",
            "no verified id_token",
        )
    return dict(token["userinfo"])


def _refusal(exc: OAuthError) -> str:
    name = settings.PANEL_OIDC_NAME
    if exc.error == "access_denied":
        return f"{name} did not sign you in (access denied). Nothing changed here."
    if exc.error == "invalid_grant":
        return (
            f"{name} refused the sign-in code: it was used already or has expired. "
            f'Start again with "Sign in with {name}".'
        )
    return f"{name} refused the sign-in ({exc.error}). Try again, or ask an admin."


def account_for(claims: Mapping[str, Any], *, actor: Actor) -> User:
    """The account of the verified claims' (issuer, subject), made at its first sign-in,
    with its memberships from the groups claim brought up to date; SignInRefused for a
    disabled account or a name a local account already has."""
    issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
    if not issuer or not subject:
        raise SignInRefused("The provider's answer names nobody; ask an admin.", "no iss/sub")
    with transaction.atomic():
        identity = (
            OidcIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if identity is None:
            try:
                with transaction.atomic():
                    identity = _first_sign_in(claims, issuer, subject, actor)
            except IntegrityError as exc:  # the same first sign-in in another tab, meanwhile
                raise SignInRefused(
                    "You were being signed in twice at once; sign in again.", str(exc)
                ) from exc
        user = identity.user
        if not user.is_active:
            raise SignInRefused(
                "Your account here is disabled; ask an admin.",
                f"{user.username} ({subject} at {issuer}) is disabled",
            )
        identity.last_login = timezone.now()
        identity.save(update_fields=["last_login"])
        signed_in = Actor(user, actor.address, actor.via)
        apply_groups(user, SOURCE, groups_of(claims), actor=signed_in)
    return user


def _first_sign_in(
    claims: Mapping[str, Any], issuer: str, subject: str, actor: Actor
) -> OidcIdentity:
    username = str(claims.get(settings.PANEL_OIDC_USERNAME_CLAIM) or "")
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError as exc:
        raise SignInRefused(
            f"Your name at {settings.PANEL_OIDC_NAME} ({username!r}) cannot be a user name "
            "here (letters, digits and @ . + - _ only); ask an admin.",
            f"claim {settings.PANEL_OIDC_USERNAME_CLAIM}={username!r} of {subject}",
        ) from exc
    users = get_user_model().objects
    if users.filter(username__iexact=username).exists():
        raise SignInRefused(
            f"An account named {username!r} already exists here and is not linked to your "
            f"{settings.PANEL_OIDC_NAME} identity, so it was not signed in to. Ask an admin: "
            "they can rename or remove that account, then sign in again.",
            f"local account {username!r} is not taken over by {subject} at {issuer}",
        )
    user = users.create_user(username=username, email=str(claims.get("email") or ""))
    user.set_unusable_password()
    user.save(update_fields=["password"])
    identity = OidcIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    audit.record(
        Actor(user, actor.address, actor.via),
        "sso.user_created",
        username,
        detail=f"OIDC subject {subject} at {issuer}",
    )
    return identity


def groups_of(claims: Mapping[str, Any]) -> list[str]:
    """The names in the groups claim (a list, or one name); none when it is absent."""
    value = claims.get(settings.PANEL_OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []
