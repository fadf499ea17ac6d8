"""Security keys and passkeys (WebAuthn, through py_webauthn).

The relying party is the host name the panel is reached by (PANEL_WEBAUTHN_RP_ID, else
the request's host); the origin is the request's scheme and host. Browsers refuse an IP
address as relying party: reach the panel by a name (localhost counts) to use keys.
Each ceremony's challenge waits in the session and is used once.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.db import IntegrityError, transaction
from django.utils import timezone
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from panel import audit
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import WebAuthnCredential

from .factors import forget_recovery_codes_if_bare

REGISTER = "panel_webauthn_register"
AUTHENTICATE = "panel_webauthn_authenticate"


@dataclass(frozen=True)
class Ceremony:
    """Where a WebAuthn ceremony happens: the relying party id, the page's origin and the
    session its challenge waits in."""

    rp_id: str
    origin: str
    session: SessionBase


def ceremony_of(request: Any) -> Ceremony:
    """The relying party and origin of the request's page."""
    host = request.get_host()
    rp_id = settings.PANEL_WEBAUTHN_RP_ID or (urlsplit(f"//{host}").hostname or "")
    return Ceremony(rp_id, f"{request.scheme}://{host}", request.session)


def _checked(ceremony: Ceremony) -> None:
    try:
        ipaddress.ip_address(ceremony.rp_id)
    except ValueError:
        return
    raise ServiceError(
        f"Security keys need the panel reached by a host name, not the address "
        f"{ceremony.rp_id}: open it by its name (or set PANEL_WEBAUTHN_RP_ID and reach it "
        "by that name)."
    )


def _descriptors(user: Any) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.credential_id))
        for c in WebAuthnCredential.objects.filter(user=user)
    ]


def _challenge(ceremony: Ceremony, key: str) -> bytes:
    stored = ceremony.session.pop(key, None)
    if not stored:
        raise ServiceError("The key's answer came without a request for it. Try again.")
    return base64url_to_bytes(stored)


def registration_options(user: Any, ceremony: Ceremony) -> str:
    """The options for navigator.credentials.create(), as JSON."""
    _checked(ceremony)
    options = generate_registration_options(
        rp_id=ceremony.rp_id,
        rp_name=settings.PANEL_WEBAUTHN_RP_NAME,
        user_name=user.get_username(),
        user_id=f"panel-user-{user.pk}".encode(),
        exclude_credentials=_descriptors(user),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    ceremony.session[REGISTER] = bytes_to_base64url(options.challenge)
    return options_to_json(options)


def register(
    user: Any, credential: Any, name: str, ceremony: Ceremony, *, actor: Actor
) -> WebAuthnCredential:
    """Keep the key that answered the registration options for the user."""
    name = (name or "").strip()[:100] or "Security key"
    challenge = _challenge(ceremony, REGISTER)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=ceremony.rp_id,
            expected_origin=ceremony.origin,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise ServiceError(f"The key's answer was refused ({exc}). Try again.") from None
    response = credential.get("response") if isinstance(credential, dict) else None
    transports = response.get("transports") if isinstance(response, dict) else None
    try:
        with transaction.atomic():
            key = WebAuthnCredential.objects.create(
                user=user,
                name=name,
                credential_id=bytes_to_base64url(verified.credential_id),
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                transports=[str(t) for t in transports or []][:8],
            )
            audit.record(actor, "mfa.webauthn_added", user.get_username(), detail=name)
    except IntegrityError:
        raise ServiceError("That key is registered already.") from None
    return key


def authentication_options(user: Any, ceremony: Ceremony) -> str:
    """The options for navigator.credentials.get() with the user's keys, as JSON."""
    _checked(ceremony)
    options = generate_authentication_options(
        rp_id=ceremony.rp_id,
        allow_credentials=_descriptors(user),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    ceremony.session[AUTHENTICATE] = bytes_to_base64url(options.challenge)
    return options_to_json(options)


def authenticate(user: Any, credential: Any, ceremony: Ceremony) -> bool:
    """The answer to authentication_options came from one of the user's keys."""
    try:
        challenge = _challenge(ceremony, AUTHENTICATE)
        if isinstance(credential, str):
            credential = json.loads(credential)
        key_id = str(credential.get("id", ""))
    except (ServiceError, ValueError, AttributeError):
        return False
    with transaction.atomic():
        key = (
            WebAuthnCredential.objects.select_for_update()
            .filter(user=user, credential_id=key_id)
            .first()
        )
        if key is None:
            return False
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=ceremony.rp_id,
                expected_origin=ceremony.origin,
                credential_public_key=bytes(key.public_key),
                credential_current_sign_count=key.sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError):
            return False
        key.sign_count, key.last_used = verified.new_sign_count, timezone.now()
        key.save(update_fields=["sign_count", "last_used"])
    return True


def remove(user: Any, key_id: int, *, actor: Actor) -> None:
    """Forget one of the user's keys (recovery codes too when no factor is left)."""
    with transaction.atomic():
        key = WebAuthnCredential.objects.filter(user=user, pk=key_id).first()
        if key is None:
            raise ServiceError("You have no such key.")
        key.delete()
        forget_recovery_codes_if_bare(user)
        audit.record(actor, "mfa.webauthn_removed", user.get_username(), detail=key.name)
