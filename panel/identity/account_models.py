"""A user's ways in that are not their password: API tokens, OpenID Connect identities and
login sessions. Declared here, imported by panel.models (the app's models module)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """A named API key of a user (``Authorization: Token <key>``). The key is shown once
    and kept only as its SHA-256 digest; a token may expire, and may carry a subset of
    privileges (panel.privileges) it never exceeds, whatever its user holds."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The key's first characters, which tell tokens apart in lists; not enough to use one.
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    # None: all of its user's rights; else the privilege names it is limited to.
    privileges = models.JSONField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_from = models.GenericIPAddressField(null=True, blank=True)
    # The addresses it was used from (the latest ones), to tell a new one.
    addresses = models.JSONField(default=list, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=models.Q(revoked_at__isnull=True),
                name="api_token_name_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"token {self.name} of {self.user}"


class OidcIdentity(models.Model):
    """The account that one OpenID Connect subject of one issuer signs in to: the link
    survives a change of the user's name at the provider."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identities"
    )
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)
    last_login = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_account_per_subject")
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class UserSession(models.Model):
    """One browser signed in as a user: a login session of Django's session store, with
    where it came from and when it was last used (panel.identity.sessions keeps the two in
    step: a row goes when its session is logged out, revoked or expires)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="panel_sessions"
    )
    # The store's key: revoking deletes the session from the store by it. Never shown.
    session_key = models.CharField(max_length=40, unique=True)
    created = models.DateTimeField()
    last_seen = models.DateTimeField()
    address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-last_seen", "-id"]

    def __str__(self) -> str:
        return f"{self.user} session #{self.pk}"
