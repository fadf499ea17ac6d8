"""Filter sets of the API where django-filter's defaults are not enough."""

from __future__ import annotations

import datetime

import django_filters
from django.db.models import QuerySet

from panel.models import AuditEvent


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 moment, compared in UTC: Python accepts offsets up to ±24 h, PostgreSQL
    only up to ±15:59, so a moment such as ...+23:44 would reach the database as an error."""

    def filter(self, qs: QuerySet, value: datetime.datetime | None) -> QuerySet:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(datetime.UTC)
        return super().filter(qs, value)


class AuditEventFilter(django_filters.FilterSet):
    time__gte = UTCDateTimeFilter(field_name="time", lookup_expr="gte")
    time__lte = UTCDateTimeFilter(field_name="time", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = {
            "action": ["exact", "icontains"],
            "result": ["exact"],
            "username": ["exact"],
            "project": ["exact"],
        }
