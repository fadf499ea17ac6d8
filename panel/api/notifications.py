"""subscriptions/ (what the caller hears of, and where), notifications/ (their bell) and
each subscription's deliveries/ (every email or webhook attempt and its answer).

All three are the caller's own: another user's, an admin's included, is not found."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from panel import notifications
from panel.actors import Actor
from panel.choices import NotificationKind
from panel.models import Delivery, Notification, Subscription
from panel.permissions import get_own, personal

from .pagination import PanelPagination


class SubscriptionSerializer(serializers.Serializer):
    """What a subscription asks to hear of and where. In the panel's bell always; by
    email to the account's address when email is true; by a signed POST to webhook_url
    when one is given (public addresses only, unless an admin allowed the receiver)."""

    id = serializers.IntegerField(read_only=True)
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=NotificationKind.choices),
        help_text="What to hear of; host.down and host.up are for administrators.",
    )
    project = serializers.IntegerField(
        allow_null=True, required=False, help_text="One of your projects; null: all of them."
    )
    email = serializers.BooleanField(required=False, default=False)
    webhook_url = serializers.CharField(required=False, allow_blank=True, default="")
    webhook_secret = serializers.CharField(
        read_only=True,
        help_text="Made by the panel: X-Panel-Signature is sha256=HMAC-SHA256(secret, "
        "'<X-Panel-Timestamp>.<body>') in hex.",
    )
    new_secret = serializers.BooleanField(
        write_only=True, required=False, default=False, help_text="Make a new secret."
    )
    created = serializers.DateTimeField(read_only=True)


class NotificationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=NotificationKind.choices)
    title = serializers.CharField()
    body = serializers.CharField()
    link = serializers.CharField()
    target = serializers.CharField()
    project = serializers.CharField(allow_null=True)
    summary = serializers.BooleanField(help_text="Counts repeats held back by the throttle.")
    created = serializers.DateTimeField()
    read = serializers.BooleanField()


class AttemptSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    status = serializers.IntegerField(allow_null=True, help_text="HTTP status, or 250 for mail.")
    answer = serializers.CharField(help_text="The start of the receiver's answer.")
    error = serializers.CharField()


class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    subscription = serializers.IntegerField()
    notification = serializers.IntegerField()
    title = serializers.CharField()
    channel = serializers.CharField()
    state = serializers.CharField()
    attempts = serializers.IntegerField()
    next_try = serializers.DateTimeField(allow_null=True)
    log = AttemptSerializer(many=True)
    created = serializers.DateTimeField()


UNREAD = inline_serializer("NotificationsRead", {"read": serializers.IntegerField()})


def _spec(data: dict[str, Any]) -> notifications.SubscriptionSpec:
    return notifications.SubscriptionSpec(
        kinds=list(data["kinds"]),
        project=data.get("project"),
        email=data.get("email", False),
        webhook_url=data.get("webhook_url", ""),
        new_secret=data.get("new_secret", False),
    )


def _page(view: Any, request: Request, queryset: QuerySet, serialize: Any) -> Response:
    paginator = PanelPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response([serialize(item) for item in page or []])


class SubscriptionViewSet(viewsets.ViewSet):
    """The caller's subscriptions."""

    serializer_class = SubscriptionSerializer
    pagination_class = PanelPagination  # documents the page envelope GET answers with
    queryset = Subscription.objects.none()  # the schema's: get_queryset is never used

    def _mine(self, pk: Any) -> Subscription:
        return get_own(Subscription.objects.select_related("project"), self.request.user, pk)

    @extend_schema(responses=SubscriptionSerializer(many=True))
    def list(self, request: Request) -> Response:
        subs = personal(Subscription.objects.all(), request.user)
        return _page(self, request, subs, notifications.serialize_subscription)

    @extend_schema(responses={201: SubscriptionSerializer})
    def create(self, request: Request) -> Response:
        given = SubscriptionSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        sub = notifications.save_subscription(
            None, _spec(given.validated_data), actor=Actor.of(request)
        )
        return Response(notifications.serialize_subscription(sub), status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(notifications.serialize_subscription(self._mine(pk)))

    def update(self, request: Request, pk: str | None = None) -> Response:
        sub = self._mine(pk)
        given = SubscriptionSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        sub = notifications.save_subscription(
            sub, _spec(given.validated_data), actor=Actor.of(request)
        )
        return Response(notifications.serialize_subscription(sub))

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        notifications.delete_subscription(self._mine(pk), actor=Actor.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        """Every email and webhook delivery of this subscription, newest first, with the
        answer of each attempt."""
        sub = self._mine(pk)
        found = Delivery.objects.filter(subscription=sub).select_related("notification")
        return _page(self, request, found, notifications.serialize_delivery)


class NotificationViewSet(viewsets.ViewSet):
    """The caller's notifications, newest first (?unread=1: only those not read)."""

    serializer_class = NotificationSerializer
    pagination_class = PanelPagination  # documents the page envelope GET answers with
    queryset = Notification.objects.none()  # the schema's: get_queryset is never used

    @extend_schema(
        responses=NotificationSerializer(many=True),
        parameters=[OpenApiParameter("unread", bool, description="Only those not read.")],
    )
    def list(self, request: Request) -> Response:
        found = personal(Notification.objects.select_related("project"), request.user)
        if request.query_params.get("unread") in ("1", "true"):
            found = found.filter(read_at__isnull=True)
        return _page(self, request, found, notifications.serialize)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(
            notifications.serialize(get_own(Notification.objects.all(), request.user, pk))
        )

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def read(self, request: Request, pk: str | None = None) -> Response:
        """Mark it read."""
        found = get_own(Notification.objects.all(), request.user, pk)
        return Response(notifications.serialize(notifications.mark_read(found)))

    @extend_schema(request=None, responses=UNREAD)
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request: Request) -> Response:
        """Mark every one read; how many were unread."""
        return Response({"read": notifications.mark_all_read(request.user)})
