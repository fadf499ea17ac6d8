"""The VM search of the list page and the API: a name containing the text, or an id
starting with it.

Both halves use an index: the name through a trigram index on PostgreSQL (migration
0010; SQLite scans its table, which stays fast at the sizes SQLite serves), the id as a
range on the primary key rather than a cast of every id to text.
"""

from __future__ import annotations

import re
import uuid

from django.db.models import Q, QuerySet
from rest_framework.filters import SearchFilter

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
