"""Second factors: the authenticator app (TOTP, RFC 6238 through pyotp) and recovery codes.

The app's secret is kept encrypted (Fernet, with a key derived from SECRET_KEY by HKDF):
a copy of the database alone does not let anyone compute codes. A code is accepted for
the current 30-second step or one either side, and never twice: the device keeps the
last step it accepted, and a code for that step or an earlier one is refused.

Recovery codes are 80 random bits each, shown once and kept as SHA-256 hashes (so
strong a secret needs no slow password hash, and a code is found by its hash).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import pyotp
import segno
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from panel import audit
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Project, RecoveryCode, SecurityPolicy, TotpDevice, WebAuthnCredential
from panel.permissions import require_admin

ISSUER = "KVM panel"
RECOVERY_CODES = 10
STEP_SECONDS = 30


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"panel.identity totp secret"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def device_secret(device: TotpDevice) -> str:
    """The base32 secret of the authenticator app, decrypted."""
    return _fernet().decrypt(device.secret.encode()).decode()


def has_totp(user: Any) -> bool:
    """The user has a confirmed authenticator app."""
    return TotpDevice.objects.filter(user=user, confirmed=True).exists()


def has_second_factor(user: Any) -> bool:
    """The user logs in with a second factor: an authenticator app or a security key."""
    return has_totp(user) or WebAuthnCredential.objects.filter(user=user).exists()


def must_have_second_factor(user: Any) -> bool:
    """An admin requires a second factor of everyone, or of a project the user is in."""
    if SecurityPolicy.current().require_second_factor:
        return True
    return Project.objects.filter(require_second_factor=True, memberships__user=user).exists()


def needs_set_up(user: Any) -> bool:
    """The user must set up a second factor before doing anything else (one query: every
    request of a signed-in user asks it)."""
    mine = OuterRef("pk")
    required = Exists(SecurityPolicy.objects.filter(require_second_factor=True)) | Exists(
        Project.objects.filter(require_second_factor=True, memberships__user=mine)
    )
    has = Exists(TotpDevice.objects.filter(user=mine, confirmed=True)) | Exists(
        WebAuthnCredential.objects.filter(user=mine)
    )
    users = get_user_model()._default_manager.filter(pk=user.pk)
    return bool(users.filter(required).exclude(has).exists())


def start_totp(user: Any) -> TotpDevice:
    """A new, unconfirmed authenticator app secret for the user (replacing an unconfirmed
    one); refused while a confirmed one exists."""
    if has_totp(user):
        raise ServiceError(
            "You already have an authenticator app. Remove it first to set up another."
        )
    secret = _fernet().encrypt(pyotp.random_base32().encode()).decode()
    device, _ = TotpDevice.objects.update_or_create(
        user=user, defaults={"secret": secret, "confirmed": False, "last_step": 0}
    )
    return device


def provisioning_uri(user: Any, device: TotpDevice) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return pyotp.TOTP(device_secret(device)).provisioning_uri(
        name=user.get_username(), issuer_name=ISSUER
    )


def qr_svg(text: str) -> str:
    """The QR code of text as inline SVG markup (no script, no style attribute)."""
    return segno.make(text, error="m").svg_inline(scale=5, dark="#000", light="#fff")


def _matching_step(secret: str, code: str, last_step: int) -> int | None:
    """The time step code belongs to (now, or one step either side) if it is later than
    last_step, else None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now = int(time.time()) // STEP_SECONDS
    for step in (now - 1, now, now + 1):
        if step > last_step and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def confirm_totp(user: Any, code: str, *, actor: Actor) -> list[str]:
    """Turn on the app set up by start_totp once it shows a right code; the new recovery
    codes (none when the user still has unused ones)."""
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user).first()
        if device is None or device.confirmed:
            raise ServiceError("Start the set-up of an authenticator app first.")
        step = _matching_step(device_secret(device), code, device.last_step)
        if step is None:
            raise ServiceError(
                "That code is not the one the app shows now. Check the app reads the QR "
                "code (or the secret) above and the phone's clock is right, then type the "
                "current code.",
                field="code",
            )
        device.confirmed, device.last_step = True, step
        device.save(update_fields=["confirmed", "last_step"])
        audit.record(actor, "mfa.totp_enabled", user.get_username())
        return first_recovery_codes(user, actor=actor)


def disable_totp(user: Any, *, actor: Actor) -> None:
    """Remove the user's authenticator app (and the recovery codes, when no factor is left)."""
    with transaction.atomic():
        deleted, _ = TotpDevice.objects.filter(user=user, confirmed=True).delete()
        if not deleted:
            raise ServiceError("You have no authenticator app to remove.")
        forget_recovery_codes_if_bare(user)
        audit.record(actor, "mfa.totp_disabled", user.get_username())


def forget_recovery_codes_if_bare(user: Any) -> None:
    """The user's last factor is gone: their recovery codes go with it."""
    if not has_second_factor(user):
        RecoveryCode.objects.filter(user=user).delete()


def verify_totp(user: Any, code: str) -> bool:
    """A right code of the user's app, not used before (it is then used up)."""
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        if device is None:
            return False
        step = _matching_step(device_secret(device), code, device.last_step)
        if step is None:
            return False
        device.last_step = step
        device.save(update_fields=["last_step"])
    return True


def _hash(code: str) -> str:
    return hashlib.sha256("".join(code.lower().replace("-", "").split()).encode()).hexdigest()


def _new_recovery_codes(user: Any) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    RecoveryCode.objects.bulk_create(RecoveryCode(user=user, code_hash=_hash(c)) for c in codes)
    return codes


def first_recovery_codes(user: Any, *, actor: Actor) -> list[str]:
    """Recovery codes for a user who just set up a factor and has none left (else [])."""
    if unused_recovery_codes(user):
        return []
    with transaction.atomic():
        codes = _new_recovery_codes(user)
        audit.record(actor, "mfa.recovery_regenerated", user.get_username(), detail="first")
    return codes


def unused_recovery_codes(user: Any) -> int:
    """How many recovery codes the user has left."""
    return RecoveryCode.objects.filter(user=user, used__isnull=True).count()


def regenerate_recovery_codes(user: Any, *, actor: Actor) -> list[str]:
    """Ten new recovery codes; the old ones stop working."""
    if not has_second_factor(user):
        raise ServiceError("Set up an authenticator app or a security key first.")
    with transaction.atomic():
        codes = _new_recovery_codes(user)
        audit.record(actor, "mfa.recovery_regenerated", user.get_username())
    return codes


def use_recovery_code(user: Any, code: str, *, actor: Actor) -> bool:
    """An unused recovery code of the user (it is then used up, and audited)."""
    with transaction.atomic():
        found = (
            RecoveryCode.objects.select_for_update()
            .filter(user=user, code_hash=_hash(code), used__isnull=True)
            .first()
        )
        if found is None:
            return False
        found.used = timezone.now()
        found.save(update_fields=["used"])
        detail = f"{unused_recovery_codes(user)} left"
        audit.record(actor, "mfa.recovery_used", user.get_username(), detail=detail)
    return True


def verify_code(user: Any, code: str, *, actor: Actor | None = None) -> bool:
    """A code of the user's authenticator app or one of their recovery codes (used up)."""
    code = str(code or "").strip()
    if not code:
        return False
    if verify_totp(user, code):
        return True
    return use_recovery_code(user, code, actor=actor or Actor(user))


def set_policy(required: bool, *, actor: Actor) -> None:
    """Require a second factor of everyone, or stop requiring it (admins)."""
    require_admin(actor.user, "change the security policy")
    with transaction.atomic():
        SecurityPolicy.objects.update_or_create(pk=1, defaults={"require_second_factor": required})
        audit.record(actor, "mfa.policy", "everyone", detail=f"require_second_factor {required}")
