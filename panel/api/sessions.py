"""sessions/: the caller's login sessions (each browser signed in as them), to see and
to end. Another user's, an admin's included, is not found; admins end a user's from
the Users page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from panel.actors import Actor
from panel.identity import sessions
from panel.models import UserSession
from panel.permissions import get_own


class SessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created = serializers.DateTimeField(help_text="When it signed in.")
    last_seen = serializers.DateTimeField(help_text="Its last request (to the minute).")
    address = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField()
    browser = serializers.SerializerMethodField(
        help_text='The user agent, short: "Firefox 133 on Linux".'
    )
    current = serializers.SerializerMethodField(help_text="The session this request came with.")

    def get_browser(self, row: UserSession) -> str:
        return sessions.short_agent(row.user_agent)

    def get_current(self, row: UserSession) -> bool:
        request = self.context["request"]
        return row.session_key == getattr(request._request.session, "session_key", None)


class RevokeAllSerializer(serializers.Serializer):
    keep_current = serializers.BooleanField(
        required=False, default=False, help_text="Keep the session this request came with."
    )


class SessionViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = SessionSerializer
    queryset = UserSession.objects.none()  # for the schema; the caller's come from sessions

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows = sessions.sessions_of(request.user)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """End the session: its cookie stops working and its websockets close."""
        row = get_own(UserSession.objects.all(), request.user, kwargs["pk"])
        sessions.revoke(row, actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=RevokeAllSerializer,
        responses=inline_serializer("SessionsRevoked", {"revoked": serializers.IntegerField()}),
    )
    @action(detail=False, methods=["post"], url_path="revoke-all")
    def revoke_all(self, request: Request) -> Response:
        """Log out everywhere: every session of the caller (but this one, if asked)."""
        ask = RevokeAllSerializer(data=request.data if isinstance(request.data, Mapping) else {})
        ask.is_valid(raise_exception=True)
        keep = request._request.session.session_key if ask.validated_data["keep_current"] else None
        count = sessions.revoke_all(request.user, actor=Actor.of(request), keep=keep)
        return Response({"revoked": count})
