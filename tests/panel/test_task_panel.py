"""The task panel at the foot of every signed-in page: the jobs its user may see, queued
and running first, then the latest finished ones, each naming and linking its target and
its job; none on the login page, the error pages and the consoles. A page brings its bar
and its rows' signature for two small queries; the rows, asked for by its script, cost a
bounded number of queries, and nothing but a 204 while unchanged."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from lxml import html

from panel.models import Host, Job, Membership, Project
from panel.task_panel import ROWS
from vms.models import VirtualMachine


@pytest.fixture
def teams(db, plain_user, django_user_model):
    """alice in alpha; bob in beta, with a job each project's members may see."""
    alpha, beta = Project.objects.create(name="alpha"), Project.objects.create(name="beta")
    Membership.objects.create(user=plain_user, project=alpha, role="operator")
    bob = django_user_model.objects.create_user("bob", password="bob-pass-4Kw8")
    Membership.objects.create(user=bob, project=beta, role="operator")
    host = Host.objects.create(name="kvm7", uri="test:///default", state="up")
    vm = VirtualMachine.objects.create(id=uuid.uuid4(), name="web1", host=host, project=alpha)
    return {"alpha": alpha, "beta": beta, "bob": bob, "host": host, "vm": vm}


def job(kind: str, target: str, state: str, **fields) -> Job:
    return Job.objects.create(kind=kind, target=target, state=state, **fields)


def listing(content: bytes) -> html.HtmlElement:
    """The panel's list: on a page, or as /jobs/panel/ answers it."""
    return html.fromstring(content).xpath("//*[@data-task-list]")[0]


def panel_rows(content: bytes) -> list[dict[str, object]]:
    """Each row of the panel: its job link, target text and link, state and user."""
    rows = []
    for tr in listing(content).xpath(".//tbody/tr[@data-task-job]"):
        target = tr.xpath("./td[@data-label='Target']")[0]
        link = target.find("a")
        rows.append(
            {
                "job": tr.xpath("./td[@data-label='Job']/a/@href")[0],
                "target": target.text_content().strip(),
                "target_href": link.get("href") if link is not None else None,
                "state": tr.xpath(".//*[@data-job-state]")[0].text_content(),
                "live": tr.get("data-job-ws"),
                "user": tr.xpath("./td[@data-label='User']")[0].text_content().strip(),
            }
        )
    return rows


def test_it_lists_only_the_users_jobs_running_first_each_linking_job_and_target(
    teams, plain_user, client
):
    vm, host = teams["vm"], teams["host"]
    done = job("vm.start", f"vm:{vm.pk}", "succeeded", project=teams["alpha"], user=plain_user)
    done.result = {"vm_name": "web1"}
    done.save()
    running = job("host.refresh", f"host:{host.name}", "running", host=host, project=teams["alpha"])
    secret = job("vm.start", f"vm:{uuid.uuid4()}", "running", project=teams["beta"])
    client.force_login(plain_user)

    page = client.get("/hosts/")
    answer = client.get("/jobs/panel/")

    assert panel_rows(answer.content) == [
        {
            "job": f"/jobs/{running.pk}/",
            "target": "kvm7",
            "target_href": f"/hosts/{host.pk}/",
            "state": "running",
            "live": f"/ws/jobs/{running.pk}/",
            "user": "system",
        },
        {
            "job": f"/jobs/{done.pk}/",
            "target": "web1",
            "target_href": f"/vms/{vm.pk}/",
            "state": "succeeded",
            "live": None,
            "user": "alice",
        },
    ]
    assert f"/jobs/{secret.pk}/" not in answer.content.decode()
    bar = html.fromstring(page.content).xpath("//section[@data-task-panel]//button")[0]
    assert " ".join(bar.text_content().split()) == "Tasks: 1 running"
    assert bar.get("aria-expanded") == "false"
    # The page has what the rows are, so that the script is told 204 while they stay so.
    assert listing(page.content).get("data-seen") == listing(answer.content).get("data-seen")
    assert f"/jobs/{secret.pk}/" not in page.content.decode()


def test_its_rows_come_alone_from_jobs_panel_and_not_at_all_while_unchanged(
    teams, plain_user, client
):
    client.force_login(plain_user)
    first = job("vm.start", f"vm:{teams['vm'].pk}", "running", project=teams["alpha"])
    job("vm.start", f"vm:{uuid.uuid4()}", "queued", project=teams["beta"])

    answer = client.get("/jobs/panel/")
    seen = listing(answer.content).get("data-seen")
    again = client.get("/jobs/panel/", {"seen": seen})
    Job.objects.filter(pk=first.pk).update(state="succeeded")
    changed = client.get("/jobs/panel/", {"seen": seen})

    assert answer.status_code == 200
    assert b"<html" not in answer.content and b"data-task-panel" not in answer.content
    assert listing(answer.content).get("data-running") == "1"
    assert [r["job"] for r in panel_rows(answer.content)] == [f"/jobs/{first.pk}/"]
    assert again.status_code == 204 and again.content == b""
    assert changed.status_code == 200
    assert [r["state"] for r in panel_rows(changed.content)] == ["succeeded"]


def test_it_shows_the_rows_it_has_room_for_and_counts_every_running_job(admin_client, db):
    for n in range(ROWS + 3):
        job("host.refresh", f"host:h{n}", "running")
    job("host.refresh", "host:old", "failed")

    page = admin_client.get("/")
    rows = panel_rows(admin_client.get("/jobs/panel/").content)

    assert len(rows) == ROWS and {r["state"] for r in rows} == {"running"}
    assert b"Tasks: 11 running" in page.content


def test_its_rows_take_a_bounded_number_of_queries(
    teams, plain_user, client, django_assert_max_num_queries
):
    for n in range(30):
        job("vm.start", f"vm:{uuid.uuid4()}", "succeeded", project=teams["alpha"], user=plain_user)
        job("host.refresh", f"host:h{n}", "running", host=teams["host"], project=teams["alpha"])
    client.force_login(plain_user)
    client.get("/jobs/")  # the session is read once, as on any later request

    # The session and its user, whether they must set up a second factor first, the
    # user's roles, the running jobs and their count (more than fit), not one query per row.
    with django_assert_max_num_queries(6):
        answer = client.get("/jobs/panel/")
    with django_assert_max_num_queries(6):
        unchanged = client.get("/jobs/panel/", {"seen": listing(answer.content).get("data-seen")})

    assert answer.status_code == 200 and unchanged.status_code == 204


def test_it_costs_a_page_two_queries_when_few_jobs_run(admin_client, db):
    job("host.refresh", "host:h1", "running")
    job("host.refresh", "host:h2", "succeeded")

    with CaptureQueriesContext(connection) as queries:
        admin_client.get("/account/")
    panel = [q["sql"] for q in queries.captured_queries if "panel_job" in q["sql"]]

    assert len(panel) == 2, panel
    assert all("result" not in sql and "auth_user" not in sql for sql in panel), panel


@pytest.mark.parametrize("kind", ["serial", "vnc"])
def test_the_consoles_have_no_panel(teams, admin_client, kind):
    job("host.refresh", "host:h1", "running")

    page = admin_client.get(f"/vms/{teams['vm'].pk}/console/{kind}/")

    assert page.status_code == 200
    assert b"data-task-panel" not in page.content and b"tasks.js" not in page.content


def test_the_login_and_error_pages_have_no_panel(admin_user, client, db):
    job("host.refresh", "host:h1", "running")
    login = client.get("/login/")
    client.force_login(admin_user)
    missing = client.get("/jobs/999999/")
    login_again = client.get("/login/")

    assert login.status_code == 200 and missing.status_code == 404
    for page in (login, missing, login_again):
        assert b"data-task-panel" not in page.content
