"""Second factors: an authenticator app (TOTP), recovery codes, security keys and passkeys
(WebAuthn), and the panel-wide rule that everyone must have one. Declared here, imported
by panel.models."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TotpDevice(models.Model):
    """A user's authenticator app: its secret (encrypted with a key derived from
    SECRET_KEY) and the last time step a code was accepted for, so no code works twice."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_device"
    )
    secret = models.TextField(help_text="Fernet token of the base32 secret.")
    confirmed = models.BooleanField(default=False)
    last_step = models.BigIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"authenticator app of {self.user_id}"


class RecoveryCode(models.Model):
    """A one-time code for when the second factor is lost; only its hash is kept."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes"
    )
    code_hash = models.CharField(max_length=200)
    used = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"recovery code of {self.user_id}"


class WebAuthnCredential(models.Model):
    """A security key or passkey registered by its user (WebAuthn)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webauthn_credentials"
    )
    name = models.CharField(max_length=100)
    credential_id = models.CharField(max_length=1400, unique=True, help_text="base64url")
    public_key = models.BinaryField()
    sign_count = models.BigIntegerField(default=0)
    transports = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return self.name


class SecurityPolicy(models.Model):
    """The panel-wide security rules admins set (one row)."""

    require_second_factor = models.BooleanField(
        default=False, help_text="Everyone must set up a second factor before using the panel."
    )

    def __str__(self) -> str:
        return "security policy"

    @classmethod
    def current(cls) -> SecurityPolicy:
        """The one row (unsaved defaults when no admin has set any)."""
        return cls.objects.filter(pk=1).first() or cls(pk=1)
