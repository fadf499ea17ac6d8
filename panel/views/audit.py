"""The audit log page, its filters and CSV export."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from panel.models import AuditEvent, Project
from panel.paging import page_of
from panel.permissions import VIEW, can_see_audit_log, restrict, visible_audit_events

FILTERS = ("user", "project", "action", "target", "result", "since", "until")


def _moment(value: str, end: bool = False) -> datetime | None:
    try:
        moment = parse_datetime(value) if "T" in value or " " in value else None
        if moment is None and (day := parse_date(value)):
            moment = datetime.combine(day, datetime.max.time() if end else datetime.min.time())
    except ValueError:
        return None  # well formed but no such moment (month 13): no filter
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    # In UTC: PostgreSQL takes offsets up to ±15:59 only, Python up to ±24 h.
    return moment.astimezone(UTC) if moment is not None else None


def filtered_events(request: HttpRequest) -> tuple[QuerySet[AuditEvent], dict[str, str]]:
    """The caller's audit events narrowed by the query string's filters."""
    if not can_see_audit_log(request.user):
        raise PermissionDenied("The audit log is for admins and project operators.")
    qs = visible_audit_events(request.user)
    values = {k: request.GET.get(k, "").strip() for k in FILTERS}
    if values["user"]:
        qs = qs.filter(username__iexact=values["user"])
    if values["project"]:
        qs = qs.filter(project__name=values["project"])
    if values["action"]:
        qs = qs.filter(action__icontains=values["action"])
    if values["target"]:
        qs = qs.filter(target__icontains=values["target"])
    if values["result"]:
        qs = qs.filter(result=values["result"])
    if values["since"] and (since := _moment(values["since"])):
        qs = qs.filter(time__gte=since)
    if values["until"] and (until := _moment(values["until"], end=True)):
        qs = qs.filter(time__lte=until)
    return qs, values


def audit_list(request: HttpRequest) -> HttpResponse:
    qs, values = filtered_events(request)
    projects = restrict(Project.objects.all(), request.user, VIEW)
    page, query = page_of(request, qs)
    return render(
        request,
        "panel/audit_list.html",
        {"page": page, "filters": values, "projects": projects, "query": query},
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


# A spreadsheet reads a cell starting with one of these as a formula (OWASP's "CSV
# injection"); usernames typed at the login page land in the export unchanged.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def _cell(value: str) -> str:
    """The value as a spreadsheet shows it as text: a leading apostrophe before a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered events as CSV; a cell that a spreadsheet would run as a formula is
    exported as text."""
    qs, _ = filtered_events(request)
    writer = csv.writer(_Echo())
    header = ["time", "user", "project", "action", "target", "result", "detail", "source_ip", "via"]

    def rows():
        yield writer.writerow(header)
        for e in qs.iterator(chunk_size=1000):
            cells = [
                e.time.isoformat(),
                e.username,
                e.project.name if e.project else "",
                e.action,
                e.target,
                e.result,
                e.detail,
                e.source_ip or "",
                e.via,
            ]
            yield writer.writerow([_cell(c) for c in cells])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response
