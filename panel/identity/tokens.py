"""API tokens: many named keys per user, each shown once and kept as its SHA-256 digest,
with an optional expiry and an optional privilege subset (its ceiling).

A key is 32 random bytes (``secrets.token_urlsafe``): a plain SHA-256 digest is enough to
keep it (nothing to brute-force), and looking a key up by its digest compares digests the
caller cannot steer, so the lookup tells nothing of how close a guess was. A token never
carries more than its user holds now: its ceiling only ever narrows the user's rights
(panel.permissions.ceiling_allows), and a disabled user's tokens stop working.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from panel import audit
from panel.actors import Actor
from panel.choices import Via
from panel.exceptions import ServiceError
from panel.models import ApiToken
from panel.permissions import clean_pk, is_admin
from panel.privileges import BUILTIN_ROLES, CATALOGUE, VIEW

log = logging.getLogger(__name__)

DEFAULT_NAME = "API token"
USE_RECORDED_EVERY = timedelta(seconds=60)
ADDRESSES_KEPT = 50


@dataclasses.dataclass(frozen=True)
class NewToken:
    """A token just made, with its key: the only time the key is known."""

    token: ApiToken
    key: str


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def live(queryset: QuerySet[ApiToken] | None = None) -> QuerySet[ApiToken]:
    """Tokens not revoked (expired ones included: their owner sees them expired)."""
    return (queryset if queryset is not None else ApiToken.objects.all()).filter(
        revoked_at__isnull=True
    )


def find(key: str) -> ApiToken | None:
    """The token a key belongs to (revoked and expired ones too), or None."""
    wanted = digest_of(key)
    token = ApiToken.objects.select_related("user").filter(digest=wanted).first()
    # The row was found by its digest; the digests are compared in constant time anyway.
    if token is None or not hmac.compare_digest(token.digest, wanted):
        return None
    return token


def refusal(token: ApiToken, now: datetime | None = None) -> str | None:
    """Why the token no longer works (revoked, expired, its user disabled), or None."""
    now = now or timezone.now()
    if token.revoked_at is not None:
        return (
            f"This API token ({token.name}) was revoked on {token.revoked_at:%Y-%m-%d %H:%M} "
            "UTC; create a new one on the API tokens page."
        )
    if token.expires is not None and token.expires <= now:
        return (
            f"This API token ({token.name}) expired on {token.expires:%Y-%m-%d %H:%M} UTC; "
            "create a new one on the API tokens page."
        )
    if not token.user.is_active:
        return "User inactive or deleted."
    return None


def ceiling_of(token: ApiToken) -> frozenset[str] | None:
    """The privileges the token is limited to (None: all of its user's)."""
    if token.privileges is None:
        return None
    return frozenset(token.privileges) | {VIEW}


def clean_privileges(names: Iterable[str] | None) -> list[str] | None:
    """A privilege subset as stored (sorted, view included), or None for no subset;
    ServiceError naming the unknown ones."""
    if names is None:
        return None
    given = {str(n) for n in names}
    unknown = sorted(given - set(CATALOGUE))
    if unknown:
        raise ServiceError(
            f"Unknown privilege{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
            f"Choose among: {', '.join(CATALOGUE)}.",
            field="privileges",
        )
    return sorted(given | {VIEW})


def preset(role: str) -> list[str]:
    """The privileges of a built-in role, for a token "like" that role."""
    if role not in BUILTIN_ROLES:
        raise ServiceError(
            f"No built-in role {role!r}; choose one of {', '.join(BUILTIN_ROLES)}.", field="like"
        )
    return sorted(BUILTIN_ROLES[role][0])


def _free_name(user: Any) -> str:
    taken = set(live(ApiToken.objects.filter(user=user)).values_list("name", flat=True))
    if DEFAULT_NAME not in taken:
        return DEFAULT_NAME
    n = 2
    while f"{DEFAULT_NAME} {n}" in taken:
        n += 1
    return f"{DEFAULT_NAME} {n}"


def refuse_token_caller(user: Any) -> None:
    """A token may not make a token (whatever its scope): creating one takes the user's
    own sign-in, recent (panel.identity.reauth)."""
    if isinstance(getattr(user, "_panel_token", None), ApiToken):
        raise PermissionDenied(
            "An API token cannot create tokens: sign in to the panel (API tokens page), or "
            "trade your username and password at POST /api/v1/auth/token/."
        )


def _check_name(user: Any, name: str, expires: datetime | None) -> str:
    name = name.strip()
    if len(name) > 100:
        raise ServiceError("A token's name is at most 100 characters.", field="name")
    if name and live(ApiToken.objects.filter(user=user, name=name)).exists():
        raise ServiceError(
            f"You already have a token named {name!r}; choose another name.", field="name"
        )
    if expires is not None and expires <= timezone.now():
        raise ServiceError("The expiry must be in the future.", field="expires")
    return name


def create_token(
    user: Any,
    *,
    actor: Actor,
    name: str = "",
    expires: datetime | None = None,
    privileges: Iterable[str] | None = None,
) -> NewToken:
    """A new token of the user's (named "API token", "API token 2"... when no name is
    given); the key is in the answer and nowhere else."""
    with audit.refusals_recorded(actor, "token.created", user.username):
        refuse_token_caller(actor.user)
        subset = clean_privileges(privileges)
        name = _check_name(user, name, expires)
        key = secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(
                    user=user,
                    name=name or _free_name(user),
                    prefix=key[:8],
                    digest=digest_of(key),
                    privileges=subset,
                    expires=expires,
                    # Where it was made counts as known: its first use from anywhere else
                    # is audited (note_use).
                    addresses=[actor.address] if actor.address else [],
                )
                audit.record(
                    actor, "token.created", f"{user.username}: {token.name}", detail=_scope(subset)
                )
        except IntegrityError:
            raise ServiceError(
                "A token of that name was created meanwhile; choose another name.", field="name"
            ) from None
    return NewToken(token, key)


def _scope(privileges: list[str] | None) -> str:
    return "all of the user's rights" if privileges is None else ", ".join(privileges)


def revoke_token(token: ApiToken, *, actor: Actor) -> None:
    """Revoke a token: its owner or an admin (callers find it through tokens_for())."""
    with transaction.atomic():
        updated = live(ApiToken.objects.filter(pk=token.pk)).update(revoked_at=timezone.now())
        if not updated:
            raise ServiceError("This token was revoked already.")
        audit.record(actor, "token.revoked", f"{token.user.username}: {token.name}")


def revoke_all(user: Any) -> int:
    """Revoke every token of a user (a disabled account; its caller audits that)."""
    return live(ApiToken.objects.filter(user=user)).update(revoked_at=timezone.now())


def tokens_for(viewer: Any, owner: Any = None) -> QuerySet[ApiToken]:
    """The live tokens viewer may see: their own; an admin also any owner's."""
    owner = owner if owner is not None else viewer
    if owner.pk != getattr(viewer, "pk", None) and not is_admin(viewer):
        return ApiToken.objects.none()
    return live(ApiToken.objects.filter(user=owner).select_related("user"))


def get_token(viewer: Any, pk: Any, *, anyone: bool = False) -> ApiToken:
    """One live token of viewer's (of anyone's for an admin when anyone is set); 404 for
    any other, revoked ones included."""
    found = live(ApiToken.objects.select_related("user"))
    if not (anyone and is_admin(viewer)):
        found = found.filter(user=viewer)
    token = found.filter(pk=clean_pk(ApiToken, pk)).first()
    if token is None:
        raise Http404("No such token.")
    return token


def note_use(token: ApiToken, address: str | None) -> None:
    """Remember when and where from the token was last used: at most once a minute, and
    at once from an address it was not used from or made from before (audited when it
    had been used or made elsewhere: a token made in a script is first used where it
    was made)."""
    now = timezone.now()
    known = list(token.addresses or [])
    new_address = bool(address) and address not in known
    recent = token.last_used_at is not None and now - token.last_used_at < USE_RECORDED_EVERY
    if recent and not new_address:
        return
    if new_address:
        known = [*known, address][-ADDRESSES_KEPT:]
    try:
        with transaction.atomic():
            ApiToken.objects.filter(pk=token.pk).update(
                last_used_at=now, last_used_from=address, addresses=known
            )
            if new_address and token.addresses:
                audit.record(
                    Actor(token.user, address, Via.API),
                    "token.used_from_new_address",
                    f"{token.user.username}: {token.name}",
                    detail=f"first use from {address}",
                )
    except OperationalError as exc:
        # A busy database does not turn the request away: its next use is recorded.
        log.warning("The last use of %s was not recorded: %s", token, exc)


def describe(token: ApiToken) -> dict[str, Any]:
    """A token as lists and the API show it (never its key)."""
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "privileges": token.privileges,
        "expires": token.expires,
        "expired": token.expires is not None and token.expires <= timezone.now(),
        "created": token.created,
        "last_used_at": token.last_used_at,
        "last_used_from": token.last_used_from,
    }
