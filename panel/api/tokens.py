"""tokens/: the caller's API tokens. The key is in the answer to the POST that makes a
token and nowhere else; DELETE revokes one. Another user's token is not found (admins
revoke them from the users page).

A token cannot make tokens, whatever its scope: creating one takes a recent sign-in of
the user's own session (or trading the password at POST /api/v1/auth/token/)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from panel.actors import Actor
from panel.identity import tokens
from panel.identity.reauth import require_recent_auth
from panel.models import ApiToken
from panel.privileges import BUILTIN_ROLES, TOKEN_CHOICES

from .pagination import PanelPagination


class TokenSerializer(serializers.Serializer):
    """A named API token: send it as ``Authorization: Token <key>``."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text='Unique among your tokens; blank: "API token", "API token 2"...',
    )
    prefix = serializers.CharField(read_only=True, help_text="The key's first 8 characters.")
    privileges = serializers.ListField(
        child=serializers.ChoiceField(choices=TOKEN_CHOICES),
        allow_null=True,
        required=False,
        default=None,
        help_text="The privileges the token is limited to (view is always included), within "
        "what its user holds at each request; null: all of its user's rights.",
    )
    like = serializers.ChoiceField(
        choices=list(BUILTIN_ROLES),
        required=False,
        write_only=True,
        help_text="Instead of privileges: those of this built-in role.",
    )
    expires = serializers.DateTimeField(
        allow_null=True, required=False, default=None, help_text="null: never expires."
    )
    expired = serializers.BooleanField(read_only=True)
    created = serializers.DateTimeField(read_only=True)
    last_used_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_used_from = serializers.IPAddressField(read_only=True, allow_null=True)


class NewTokenSerializer(TokenSerializer):
    key = serializers.CharField(
        read_only=True, help_text="The key: shown in this answer only, kept hashed."
    )


class ApiTokenViewSet(viewsets.ViewSet):
    """The caller's live API tokens (not revoked; expired ones are listed as expired)."""

    serializer_class = TokenSerializer
    pagination_class = PanelPagination
    queryset = ApiToken.objects.none()  # the schema's: get_queryset is never used

    @extend_schema(responses=TokenSerializer(many=True))
    def list(self, request: Request) -> Response:
        paginator = PanelPagination()
        page = paginator.paginate_queryset(tokens.tokens_for(request.user), request, view=self)
        return paginator.get_paginated_response([tokens.describe(t) for t in page or []])

    @extend_schema(
        request=TokenSerializer,
        responses={201: NewTokenSerializer},
        description="Needs a session signed in within PANEL_REAUTH_SECONDS; refused (403) "
        "to a request authenticated by a token.",
    )
    def create(self, request: Request) -> Response:
        tokens.refuse_token_caller(request.user)
        require_recent_auth(request)
        given = TokenSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        made = tokens.create_token(request.user, actor=Actor.of(request), **_spec(given))
        return Response(
            {**tokens.describe(made.token), "key": made.key}, status=status.HTTP_201_CREATED
        )

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(tokens.describe(tokens.get_token(request.user, pk)))

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        tokens.revoke_token(tokens.get_token(request.user, pk), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _spec(given: TokenSerializer) -> dict[str, Any]:
    data = given.validated_data
    like = data.get("like")
    return {
        "name": data.get("name", ""),
        "expires": data.get("expires"),
        "privileges": tokens.preset(like) if like else data.get("privileges"),
    }
