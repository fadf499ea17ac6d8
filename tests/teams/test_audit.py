"""The audit log: a row for every change and every refusal, a page whose filters
narrow it, and a CSV export that holds exactly what the page would show."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest
from django.db import transaction
from lxml import html as lxml_html

from panel import audit, quotas
from panel.actors import Actor
from panel.models import AuditEvent, Host, Project
from panel.quotas import QuotaExceeded
from vms.models import VirtualMachine

from .conftest import texts

HEADER = ["time", "user", "project", "action", "target", "result", "detail", "source_ip", "via"]


def audit_rows(response) -> list[dict[str, str]]:
    """The audit table as shown: one dict per row, keyed like the CSV header (the page
    shows how the change came in beside its address)."""
    assert response.status_code == 200, response.status_code
    cells = texts(response, "//table[contains(@class, 'audit')]/tbody/tr[count(td) = 8]/td")
    return [dict(zip(HEADER[:8], cells[i : i + 8], strict=True)) for i in range(0, len(cells), 8)]


def export_rows(response) -> tuple[list[str], list[dict[str, str]]]:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    lines = list(csv.reader(io.StringIO(text)))
    return lines[0], [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 1, day, hour, tzinfo=UTC)


# --- rows written for changes -------------------------------------------------------------


def test_it_records_a_project_created_on_the_page(client_for):
    response = client_for("admin").post("/projects/add/", {"name": "gamma", "quota_vms": "2"})

    assert response.status_code == 302
    event = AuditEvent.objects.get(action="project.create", target="gamma")
    assert (event.username, event.project.name, event.result) == ("admin", "gamma", "success")
    assert (event.source_ip, event.via) == ("127.0.0.1", "page")
    assert "'vms': 2" in event.detail
    shown = audit_rows(client_for("admin").get("/audit/?action=project.create&project=gamma"))
    assert [(r["user"], r["action"], r["target"], r["result"]) for r in shown] == [
        ("admin", "project.create", "gamma", "success")
    ]


def test_it_records_a_member_added_by_an_operator(alpha, client_for):
    response = client_for("operator").post(
        f"/projects/{alpha.pk}/members/", {"username": "newcomer", "role": "member"}
    )

    assert response.status_code == 302
    event = AuditEvent.objects.get(action="member.add", target="newcomer in alpha")
    assert (event.username, event.project, event.result) == ("operator", alpha, "success")
    assert event.detail == "role member"
    shown = audit_rows(client_for("operator").get("/audit/?target=newcomer"))
    assert [(r["user"], r["project"], r["action"]) for r in shown] == [
        ("operator", "alpha", "member.add")
    ]


def test_it_records_a_user_created_on_the_users_page(client_for):
    response = client_for("admin").post(
        "/users/", {"username": "newbie", "password": "Silver-meadow-62r"}
    )

    assert response.status_code == 302
    event = AuditEvent.objects.get(action="user.create", target="newbie")
    assert (event.username, event.result, event.project) == ("admin", "success", None)


# --- rows written for refusals ------------------------------------------------------------


def test_it_records_a_member_refused_adding_a_host(client_for):
    response = client_for("member").post(
        "/hosts/add/", {"name": "sneaky", "uri": "qemu+ssh://root@sneaky.example.test/system"}
    )

    assert response.status_code == 403
    assert "Only administrators can add hosts." in response.content.decode()
    assert not Host.objects.filter(name="sneaky").exists()
    event = AuditEvent.objects.get(result="denied", username="member")
    assert (event.action, event.target) == ("POST /hosts/add/", "/hosts/add/")
    assert event.detail == "Only administrators can add hosts."
    shown = audit_rows(client_for("admin").get("/audit/?result=denied&user=member"))
    assert [(r["action"], r["result"]) for r in shown] == [("POST /hosts/add/", "denied")]


def test_it_records_a_refusal_from_the_api(api_for):
    response = api_for("viewer").post(
        "/api/v1/projects/", {"name": "mine"}, content_type="application/json"
    )

    assert response.status_code == 403
    event = AuditEvent.objects.get(result="denied", username="viewer")
    assert (event.action, event.detail) == (
        "POST /api/v1/projects/",
        "Only administrators can create projects.",
    )
    assert event.via == "api"
    assert not Project.objects.filter(name="mine").exists()


def test_it_says_which_way_each_change_came_in(api_for, client_for):
    api_for("admin").post("/api/v1/projects/", {"name": "by-api"}, content_type="application/json")
    client_for("admin").post("/projects/add/", {"name": "by-page"})

    made = {("by-api", "api"), ("by-page", "page")}
    events = AuditEvent.objects.filter(action="project.create", target__startswith="by-")
    assert {(e.target, e.via) for e in events} == made
    api_rows = api_for("admin").get("/api/v1/audit-events/?action=project.create").json()
    assert made <= {(r["target"], r["via"]) for r in api_rows["results"]}
    _header, rows = export_rows(client_for("admin").get("/audit/export.csv?action=project.create"))
    assert made <= {(r["target"], r["via"]) for r in rows}
    page = client_for("admin").get("/audit/?action=project.create").content.decode()
    assert "(API)" in page and "(Page)" in page


def test_it_records_a_quota_refusal_after_rolling_the_creation_back(
    world, alpha, member, client_for
):
    host = world.teams["alpha"].host

    with (
        pytest.raises(QuotaExceeded),
        audit.refusals_recorded(Actor(member), "vm.create", "alpha-big", project=alpha),
        transaction.atomic(),
    ):
        quotas.reserve(alpha, vms=1, vcpus=4, memory_mib=256)
        VirtualMachine.objects.create(id=uuid.uuid4(), name="alpha-big", host=host, project=alpha)

    assert not VirtualMachine.objects.filter(name="alpha-big").exists()
    event = AuditEvent.objects.get(action="vm.create")
    assert (event.username, event.project, event.target, event.result) == (
        "member",
        alpha,
        "alpha-big",
        "denied",
    )
    assert "vCPUs would be 7 of 4 allowed" in event.detail
    shown = audit_rows(client_for("operator").get("/audit/?result=denied"))
    assert [(r["user"], r["project"], r["action"], r["target"]) for r in shown] == [
        ("member", "alpha", "vm.create", "alpha-big")
    ]


# --- the page and its filters -------------------------------------------------------------


@pytest.fixture
def dated(world, member, outsider, alpha, beta):
    """Four events of January 2025 on top of the world's (all of today)."""
    rows = [
        audit.record(Actor(member), "vm.stop", "alpha-web", project=alpha),
        audit.record(Actor(outsider), "vm.stop", "beta-app", project=beta),
        audit.record(Actor(member), "vm.delete", "alpha-old", project=alpha, result="failure"),
        audit.record(Actor(outsider), "vm.delete", "beta-old", project=beta, result="denied"),
    ]
    for event, moment in zip(rows, [at(5), at(10), at(10, 23), at(20)], strict=True):
        AuditEvent.objects.filter(pk=event.pk).update(time=moment)
    return rows


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("user=outsider", lambda e: e.username == "outsider"),
        ("user=OUTSIDER", lambda e: e.username == "outsider"),
        ("project=beta", lambda e: e.project is not None and e.project.name == "beta"),
        ("action=vm.", lambda e: e.action.startswith("vm.")),
        ("action=member", lambda e: "member" in e.action),
        ("result=failure", lambda e: e.result == "failure"),
        ("result=denied", lambda e: e.result == "denied"),
        ("since=2025-01-10", lambda e: at(10, 0) <= e.time),
        ("until=2025-01-10", lambda e: e.time < at(11, 0)),
        ("since=2025-01-06&until=2025-01-10", lambda e: at(6, 0) <= e.time < at(11, 0)),
        (
            "user=member&since=2025-01-01&until=2025-01-31",
            lambda e: e.username == "member" and e.time < at(31, 23),
        ),
    ],
)
def test_it_narrows_the_audit_page_to_the_filtered_rows(dated, client_for, query, expected):
    shown = audit_rows(client_for("admin").get(f"/audit/?{query}"))

    wanted = [e for e in AuditEvent.objects.select_related("project") if expected(e)]
    assert 0 < len(shown) < AuditEvent.objects.count()
    assert sorted((r["action"], r["target"]) for r in shown) == sorted(
        (e.action, e.target) for e in wanted
    )


def test_it_says_so_when_no_row_matches_the_filters(world, client_for):
    response = client_for("admin").get("/audit/?action=no-such-action")

    assert audit_rows(response) == []
    assert texts(response, "//table[contains(@class, 'audit')]/tbody/tr") == [
        "Nothing recorded for these filters."
    ]


def test_it_refuses_the_audit_page_and_export_to_a_member(client_for):
    member = client_for("member")

    page = member.get("/audit/")
    export = member.get("/audit/export.csv")

    assert (page.status_code, export.status_code) == (403, 403)
    assert "The audit log is for admins and project operators." in page.content.decode()
    assert "alpha-web" not in page.content.decode()


# --- the CSV export -----------------------------------------------------------------------


def test_it_exports_the_filtered_rows_with_a_header(dated, client_for):
    header, rows = export_rows(
        client_for("admin").get("/audit/export.csv?project=beta&user=outsider")
    )

    assert header == HEADER
    wanted = AuditEvent.objects.filter(project__name="beta", username="outsider")
    assert len(rows) == wanted.count() >= 3
    assert {(r["user"], r["project"]) for r in rows} == {("outsider", "beta")}
    assert {"vm.start", "vm.stop", "vm.delete"} <= {r["action"] for r in rows}
    old = next(r for r in rows if r["target"] == "beta-old")
    assert (old["result"], old["time"]) == ("denied", at(20).isoformat())


def test_it_exports_only_their_projects_events_to_an_operator(dated, client_for, operator):
    header, rows = export_rows(client_for("operator").get("/audit/export.csv"))

    assert header == HEADER
    assert rows, "the operator's export is empty"
    assert {r["project"] for r in rows} <= {"alpha", ""}
    assert all(r["user"] == "operator" for r in rows if r["project"] == "")
    assert not any("beta" in ",".join(r.values()) or r["user"] == "outsider" for r in rows)
    assert {"alpha-web", "alpha-old"} <= {r["target"] for r in rows}


def test_it_exports_nothing_of_another_project_when_an_operator_asks_for_it(dated, client_for):
    header, rows = export_rows(client_for("operator").get("/audit/export.csv?project=beta"))

    assert header == HEADER
    assert rows == []


@pytest.mark.sqlite
def test_it_filters_by_a_moment_with_any_utc_offset_python_accepts(dated, client_for, api_for):
    # +23:44 is a valid offset in ISO 8601 and Python, beyond what PostgreSQL takes (±15:59):
    # the moment is compared in UTC, 2025-01-09T20:00Z, never a server error.
    offset, utc = "2025-01-10T19:44:00%2B23:44", "2025-01-09T20:00:00Z"
    admin_page, admin_api = client_for("admin"), api_for("admin")

    for query in (f"since={offset}", f"since={utc}"):
        assert admin_page.get(f"/audit/?{query}").status_code == 200
    api = admin_api.get(f"/api/v1/audit-events/?time__gte={offset}&page_size=500")

    assert api.status_code == 200, api.content
    assert sorted(audit_rows(admin_page.get(f"/audit/?since={offset}")), key=str) == sorted(
        audit_rows(admin_page.get(f"/audit/?since={utc}")), key=str
    )
    shown = {e["id"] for e in api.json()["results"]}
    early, *later = dated
    assert early.pk not in shown and {e.pk for e in later} <= shown


def test_it_pages_the_audit_log_fifty_rows_at_a_time_keeping_the_filters(
    world, client_for, alpha, member
):
    for n in range(120):
        audit.record(Actor(member), "vm.start", f"paged-{n:03}", project=alpha)
    audit.record(Actor(member), "vm.start", "not-paged", project=alpha)
    admin = client_for("admin")

    first = admin.get("/audit/?target=paged-")
    last = admin.get("/audit/?target=paged-&page=3")

    assert [r["target"] for r in audit_rows(first)] == [f"paged-{n:03}" for n in range(119, 69, -1)]
    assert [r["target"] for r in audit_rows(last)] == [f"paged-{n:03}" for n in range(19, -1, -1)]
    assert texts(first, "//nav[@aria-label='Pages']//a") == ["Next"]
    assert lxml_html.fromstring(first.content).xpath("//nav[@aria-label='Pages']//a/@href") == [
        "?target=paged-&page=2"
    ]
    assert "120 events, 50 a page" in " ".join(texts(first, "//main//p"))
    assert texts(last, "//nav[@aria-label='Pages']//span") == ["Page 3 of 3"]
    # The export is not paged: every matching row.
    assert len(export_rows(admin.get("/audit/export.csv?target=paged-&page=2"))[1]) == 120
