"""Pages of long lists read in two steps, so that a page far down a list of a hundred
thousand rows costs little more than the first.

One query reads the page's keys, in the list's order, from the ordering's index: the
rows skipped to get there are neither read from the table nor joined to their host and
project. A second reads those rows, with their joins, by key.
"""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

PER_PAGE = 50


class KeyFirstPaginator(Paginator):
    def page(self, number: int | str) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return self._get_page(rows[bottom:top], number, self)  # type: ignore[attr-defined]
        keys = list(rows.values_list("pk", flat=True)[bottom:top])
        found = {row.pk: row for row in rows.order_by().filter(pk__in=keys)}
        # A row deleted between the two reads is left out of the page.
        return self._get_page(  # type: ignore[attr-defined]
            [found[k] for k in keys if k in found], number, self
        )


def page_of(request: HttpRequest, rows: QuerySet, per_page: int = PER_PAGE) -> tuple[Page, str]:
    """The page of rows that request's ?page= asks for (the first for anything else, the
    last past the end), and the request's other query parameters for the pager's links
    (templates/panel/_pager.html)."""
    page = KeyFirstPaginator(rows, per_page).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return page, query.urlencode()
