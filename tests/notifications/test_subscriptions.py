"""Subscriptions through the API and the pages: what they may ask for, the secret the
panel makes, the audit rows; the bell's page, marking read; a missed scheduled backup."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from panel.choices import NotificationKind
from panel.models import AuditEvent, Host, Notification, Subscription
from tests.vms.conftest import alerts, page_text, texts
from vms.models import BackupSchedule, VirtualMachine
from vms.services.schedules import run_schedules

from .conftest import subscribe

pytestmark = pytest.mark.django_db


def post(api, data):
    return api.post("/api/v1/subscriptions/", data, format="json")


def test_it_saves_a_subscription_with_a_secret_of_its_own_and_audits_it(
    api_for, people, alpha, settings
):
    settings.PANEL_WEBHOOK_ALLOW = ["127.0.0.1/32"]
    api = api_for("member")

    made = post(
        api,
        {
            "kinds": ["job.failed", "vm.crashed"],
            "project": alpha.pk,
            "email": True,
            "webhook_url": "http://127.0.0.1:9/hook",
        },
    )
    assert made.status_code == 201, made.json()
    sub = made.json()
    renewed = api.put(
        f"/api/v1/subscriptions/{sub['id']}/",
        {"kinds": ["backup.failed"], "webhook_url": "http://127.0.0.1:9/hook", "new_secret": True},
        format="json",
    )
    gone = api.delete(f"/api/v1/subscriptions/{sub['id']}/")

    assert (sub["kinds"], sub["project"], sub["email"]) == (
        ["job.failed", "vm.crashed"],
        alpha.pk,
        True,
    )
    assert len(sub["webhook_secret"]) >= 40
    assert renewed.status_code == 200
    assert renewed.json()["kinds"] == ["backup.failed"]
    assert renewed.json()["project"] is None
    assert renewed.json()["webhook_secret"] not in ("", sub["webhook_secret"])
    assert gone.status_code == 204
    assert not Subscription.objects.exists()
    actions = AuditEvent.objects.filter(username="member", action__startswith="subscription.")
    actions = actions.values_list("action", "project")
    assert sorted(actions) == [
        ("subscription.create", alpha.pk),
        ("subscription.delete", None),
        ("subscription.update", None),
    ]


@pytest.mark.parametrize(
    ("persona", "data", "field", "says"),
    [
        ("member", {"kinds": []}, "kinds", "Choose what to hear of"),
        ("member", {"kinds": ["vm.exploded"]}, "kinds", "is not a valid choice"),
        ("member", {"kinds": ["host.down"]}, "kinds", "Only administrators"),
        ("member", {"kinds": ["job.failed"], "project": "beta"}, "project", "No project with id"),
        ("nomail", {"kinds": ["job.failed"], "email": True}, "email", "no email address"),
        (
            "member",
            {"kinds": ["job.failed"], "webhook_url": "http://localhost/hook"},
            "webhook_url",
            "loopback, private or link-local",
        ),
        (
            "member",
            {"kinds": ["job.failed"], "webhook_url": "ftp://hooks.example.org/"},
            "webhook_url",
            "is not an http or https URL",
        ),
    ],
)
def test_it_refuses_a_subscription_it_cannot_keep_and_says_why(
    api_for, people, beta, django_user_model, persona, data, field, says
):
    if persona == "nomail":
        people.users["nomail"] = django_user_model.objects.create_user("nomail", "", "x")
    if data.get("project") == "beta":
        data = {**data, "project": beta.pk}

    answer = post(api_for(persona), data)

    assert answer.status_code == 400
    assert says in str(answer.json()[field])
    assert not Subscription.objects.exists()


def test_it_lets_an_admin_hear_of_hosts(api_for, people):
    answer = post(api_for("admin"), {"kinds": ["host.down", "host.up"]})

    assert answer.status_code == 201


def test_it_subscribes_through_the_page_and_shows_the_refusal_on_its_field(
    client_for, people, alpha
):
    client = client_for("member")

    refused = client.post(
        "/notifications/subscriptions/add/",
        {"kinds": ["job.failed"], "webhook_url": "http://10.0.0.1/hook"},
    )
    done = client.post(
        "/notifications/subscriptions/add/",
        {"kinds": ["job.failed", "backup.missed"], "project": alpha.pk, "email": "on"},
    )
    page = client.get("/notifications/subscriptions/")

    assert refused.status_code == 400
    assert any("10.0.0.1, a loopback, private" in a for a in alerts(refused))
    assert done.status_code == 302
    assert texts(page, "//table//tr/td[1]") == ["job.failed, backup.missed"]
    # Host kinds are not offered to a member.
    assert "A host went down" not in page_text(page)
    assert "A host went down" in page_text(client_for("admin").get("/notifications/subscriptions/"))


def test_it_shows_the_bell_count_and_marks_notifications_read(client_for, api_for, people):
    member = people["member"]
    first, second = (
        Notification.objects.create(
            user=member, kind="job.failed", title=f"Job {n} failed", link="/jobs/"
        )
        for n in (1, 2)
    )
    client = client_for("member")

    bell = texts(client.get("/vms/"), "//a[@data-bell]//span[@data-bell-count]")
    opened = client.post(f"/notifications/{first.pk}/read/", {"open": "1"})
    listed = api_for("member").get("/api/v1/notifications/?unread=1").json()
    read_all = client.post("/notifications/read-all/")

    assert bell == ["2"]
    assert opened.status_code == 302 and opened["Location"] == "/jobs/"
    assert [n["title"] for n in listed["results"]] == ["Job 2 failed"]
    assert read_all.status_code == 302
    second.refresh_from_db()
    assert second.read_at is not None
    assert texts(client.get("/vms/"), "//a[@data-bell]//span[@data-bell-count]") == ["0"]


def test_it_tells_a_scheduled_backup_that_could_not_start(people, alpha):
    host = Host.objects.create(name="kvm09", uri="qemu+tcp://127.0.0.1:1/system", state="up")
    vm = VirtualMachine.objects.create(
        id="0d7a3c57-1f0e-4c1e-9a57-3b0f2f8f0a09", name="alpha-web", host=host, project=alpha
    )
    # The schedule acts as the viewer who made it, who may not back the VM up.
    BackupSchedule.objects.create(
        vm=vm,
        project=alpha,
        created_by=people["viewer"],
        next_run=timezone.now() - timedelta(minutes=1),
    )
    subscribe(people["member"], NotificationKind.BACKUP_MISSED, project=alpha)
    subscribe(people["outsider"], NotificationKind.BACKUP_MISSED)

    run_schedules()

    [note] = Notification.objects.filter(user=people["member"])
    assert note.title == "Scheduled backup of alpha-web was missed"
    assert note.body.startswith("Schedule #")
    assert not Notification.objects.filter(user=people["outsider"]).exists()


def test_it_tells_a_scheduled_backup_missed_while_the_scheduler_was_down(people, alpha):
    host = Host.objects.create(name="kvm10", uri="qemu+tcp://127.0.0.1:1/system", state="up")
    vm = VirtualMachine.objects.create(
        id="5b1e2a0c-8d7f-4f43-9e51-0c2d6a7b8e10", name="alpha-db", host=host, project=alpha
    )
    due = timezone.now() - timedelta(hours=3)
    BackupSchedule.objects.create(vm=vm, project=alpha, created_by=people["viewer"], next_run=due)
    subscribe(people["member"], NotificationKind.BACKUP_MISSED, project=alpha)

    run_schedules()

    bodies = sorted(n.body for n in Notification.objects.filter(user=people["member"]))
    assert any("when the scheduler was not running; it runs now" in b for b in bodies)
    assert timezone.localtime(due).strftime("%Y-%m-%d %H:%M") in " ".join(bodies)
