"""The VM search of the list page and the API: a name containing the text, or an id
starting with it; and their tag filter, the VMs having one tag.

Both halves use an index: the name through a trigram index on PostgreSQL (migration
0010; SQLite scans its table, which stays fast at the sizes SQLite serves), the id as a
range on the primary key rather than a cast of every id to text. The tag filter uses a
GIN index of the tags on PostgreSQL (migration 0011); SQLite, which has no JSON
containment, finds the tag quoted in the list's JSON text.
"""

from __future__ import annotations

import re
import uuid

from django.db import connections
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from rest_framework.filters import BaseFilterBackend, SearchFilter

from vms.services.tags import TAG

_HEX = re.compile(r"[0-9a-f]{1,32}")


def id_prefix_range(text: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The lowest and highest UUID that start with text (dashes optional), or None when
    text cannot begin a UUID."""
    digits = text.lower().replace("-", "")
    if not _HEX.fullmatch(digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def matching(qs: QuerySet, text: str) -> QuerySet:
    """The VMs of qs whose name contains text (any case) or whose id starts with it."""
    text = text.strip()
    if not text:
        return qs
    found = Q(name__icontains=text)
    if (bounds := id_prefix_range(text)) is not None:
        found |= Q(pk__range=bounds)
    return qs.filter(found)


class VMSearchFilter(SearchFilter):
    """The API's `search` parameter for VMs: the same search as the list page."""

    search_description = "A name containing this text (any case), or an id starting with it."

    def filter_queryset(self, request, queryset, view):
        return matching(queryset, request.query_params.get(self.search_param, ""))


def with_tag(qs: QuerySet, tag: str) -> QuerySet:
    """The VMs of qs that have tag (any case); none for a text that cannot be a tag."""
    tag = tag.strip().lower()
    if not tag:
        return qs
    if not TAG.fullmatch(tag):
        return qs.none()
    if connections[qs.db].vendor == "postgresql":
        return qs.filter(tags__contains=[tag])
    # Tags hold no character JSON escapes, so '"web"' in the text is exactly the tag web.
    return qs.alias(tags_text=Cast("tags", TextField())).filter(tags_text__contains=f'"{tag}"')


class VMTagFilter(BaseFilterBackend):
    """The API's `tag` parameter for VMs: the same filter as the list page's."""

    def filter_queryset(self, request, queryset, view):
        return with_tag(queryset, request.query_params.get("tag", ""))

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "tag",
                "required": False,
                "in": "query",
                "description": "Only the VMs having this tag (any case).",
                "schema": {"type": "string"},
            }
        ]
