"""``Authorization: Token <key>`` for the API (and /metrics): the named tokens of
panel.identity.tokens, then, for keys rest_framework's authtoken table still holds
(made by older code before the upgrade moved them), that table.

A token with a privilege subset sets ``user._panel_ceiling`` (panel.permissions
honours it); ``user._panel_token`` tells the views the request came with a token.
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from panel.actors import client_ip
from panel.models import ApiToken

from . import tokens


def user_for_key(key: str) -> tuple[Any, ApiToken] | None:
    """The user a named token's key stands for, ceiling set, and the token; None for an
    unknown key; AuthenticationFailed (401) saying why for a revoked or expired one."""
    token = tokens.find(key)
    if token is None:
        return None
    why = tokens.refusal(token)
    if why:
        raise AuthenticationFailed(why)
    user = token.user
    ceiling = tokens.ceiling_of(token)
    if ceiling is not None:
        setattr(user, "_panel_ceiling", ceiling)  # noqa: B010 (read by panel.permissions)
    setattr(user, "_panel_token", token)  # noqa: B010 (a token, not a sign-in)
    return user, token


class PanelTokenAuthentication(TokenAuthentication):
    """DRF's scheme and messages ("Invalid token.", 401), with named hashed tokens."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        found = super().authenticate(request)
        if found is not None and isinstance(found[1], ApiToken):
            tokens.note_use(found[1], client_ip(request))
        return found

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        found = user_for_key(key)
        if found is not None:
            return found
        # A key of the old table (plaintext, all of its user's rights, no expiry).
        return super().authenticate_credentials(key)
