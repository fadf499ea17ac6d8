"""The REST API's core for hosts and jobs, as /work/shared/API.md promises it."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from panel import jobs, throttle
from panel.actors import Actor
from panel.choices import JobKind
from panel.identity import tokens
from panel.models import ApiToken, AuditEvent, Host, Job
from tests.conftest import ADMIN_PASSWORD

from .conftest import CHECKS, FAKE_URI, UNREACHABLE_URI, make_host, queued_tasks

pytestmark = pytest.mark.django_db

HOST_FIELDS = {"id", "name", "uri", "state", "capabilities", "checks", "domain_type"}
JOB_FIELDS = {
    "id",
    "kind",
    "state",
    "progress",
    "message",
    "log",
    "target",
    "created",
    "started",
    "finished",
    "user",
}


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    return client_for(admin_user)


@pytest.fixture
def operator_api(operator_user) -> APIClient:
    return client_for(operator_user)


@pytest.fixture
def user_api(plain_user) -> APIClient:
    return client_for(plain_user)


@pytest.fixture
def outsider_api(outsider_user) -> APIClient:
    return client_for(outsider_user)


@pytest.fixture
def forget_login_failures():
    """Login failures are counted in Redis for the whole run: forget ours afterwards."""
    names = []
    yield names.append
    for name in names:
        throttle.reset(name, "127.0.0.1")


# --- tokens --------------------------------------------------------------------------


def test_it_trades_good_credentials_for_a_working_token(admin_user):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "admin", "password": ADMIN_PASSWORD}, format="json"
    )

    assert response.status_code == 200
    assert set(response.json()) == {"token"}
    token = response.json()["token"]
    assert ApiToken.objects.get(user=admin_user).digest == tokens.digest_of(token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/hosts/").status_code == 200


def test_it_refuses_a_token_for_a_wrong_password(admin_user, forget_login_failures):
    forget_login_failures("admin")

    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "admin", "password": "guess"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"detail": "Wrong username or password."}
    assert not ApiToken.objects.exists()
    event = AuditEvent.objects.get(action="login.failed")
    assert (event.result, event.target) == ("denied", "admin")


def test_it_stops_answering_after_repeated_wrong_passwords(plain_user, forget_login_failures):
    forget_login_failures("alice")
    api = APIClient()
    for _ in range(5):
        wrong = {"username": "alice", "password": "guess"}
        assert api.post("/api/v1/auth/token/", wrong, format="json").status_code == 400

    right = {"username": "alice", "password": "alice-pass-7Hq2"}
    response = api.post("/api/v1/auth/token/", right, format="json")

    assert response.status_code == 429
    assert response.json()["detail"].startswith("Too many failed logins for this user")
    assert not ApiToken.objects.exists()


def test_it_answers_401_to_an_anonymous_caller(host):
    api = APIClient()

    assert api.get("/api/v1/hosts/").status_code == 401
    assert api.get(f"/api/v1/hosts/{host.pk}/").status_code == 401
    assert api.post("/api/v1/hosts/", {"name": "x", "uri": FAKE_URI}).status_code == 401
    assert api.post(f"/api/v1/hosts/{host.pk}/refresh/").status_code == 401
    assert api.delete(f"/api/v1/hosts/{host.pk}/").status_code == 401
    assert api.get("/api/v1/jobs/").status_code == 401
    assert Host.objects.count() == 1
    assert not Job.objects.exists()


def test_it_refuses_a_revoked_or_made_up_token(host):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    assert api.get("/api/v1/hosts/").status_code == 401


# --- listing hosts -------------------------------------------------------------------------


def test_it_lists_hosts_paginated_with_the_contract_fields(admin_api):
    make_host("kvm01")
    make_host("kvm02", state="down")

    body = admin_api.get("/api/v1/hosts/?page_size=1").json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert body["previous"] is None
    assert "page=2" in body["next"]
    [first] = body["results"]
    assert HOST_FIELDS <= set(first)
    assert (first["name"], first["state"], first["domain_type"]) == ("kvm01", "up", "kvm")
    assert first["uri"] == "qemu+ssh://root@kvm01.example.test/system"
    assert first["checks"] == CHECKS
    assert first["capabilities"]["cpus"] == 16
    second = admin_api.get(body["next"]).json()
    assert [h["name"] for h in second["results"]] == ["kvm02"]
    assert second["results"][0]["state"] == "down"
    assert second["next"] is None


def test_it_filters_and_searches_hosts(admin_api):
    make_host("kvm01")
    make_host("kvm02", state="down")

    down = admin_api.get("/api/v1/hosts/?state=down").json()
    found = admin_api.get("/api/v1/hosts/?search=kvm01").json()

    assert [h["name"] for h in down["results"]] == ["kvm02"]
    assert [h["name"] for h in found["results"]] == ["kvm01"]


def test_it_shows_hosts_to_project_members_only(operator_api, outsider_api, host):
    assert [h["name"] for h in operator_api.get("/api/v1/hosts/").json()["results"]] == ["kvm01"]
    assert outsider_api.get("/api/v1/hosts/").json()["count"] == 0
    assert outsider_api.get(f"/api/v1/hosts/{host.pk}/").status_code == 404


# --- adding a host -----------------------------------------------------------------------


def test_it_adds_a_host(admin_api, admin_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_api.post(
            "/api/v1/hosts/", {"name": "fake1", "uri": FAKE_URI}, format="json"
        )

    assert response.status_code == 201
    body = response.json()
    host = Host.objects.get(name="fake1")
    assert body["id"] == host.pk
    assert (body["name"], body["uri"], body["state"]) == ("fake1", FAKE_URI, "up")
    assert body["capabilities"]["driver"] == "TEST"
    assert body["capabilities"]["cpus"] == 16
    event = AuditEvent.objects.get(action="host.add")
    assert (event.result, event.username) == ("success", "admin")
    job = Job.objects.get(host=host)
    assert (job.kind, job.state, job.user) == (JobKind.HOST_REFRESH, "queued", admin_user)
    assert queued_tasks(callbacks) == [("panel.refresh_host", (job.pk,))]


def test_it_refuses_add_host_to_a_non_admin_and_audits_it(operator_api):
    response = operator_api.post(
        "/api/v1/hosts/", {"name": "fake1", "uri": FAKE_URI}, format="json"
    )

    assert response.status_code == 403
    assert response.json() == {"detail": "Only administrators can manage hosts."}
    assert not Host.objects.exists()
    event = AuditEvent.objects.get()
    assert (event.result, event.username, event.action) == (
        "denied",
        "alice",
        "POST /api/v1/hosts/",
    )


def test_it_refuses_add_host_to_an_outsider_whatever_the_input(outsider_api, host):
    response = outsider_api.post(
        "/api/v1/hosts/", {"name": "kvm01", "uri": FAKE_URI}, format="json"
    )

    assert response.status_code == 403
    assert "kvm01" not in response.content.decode()


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://example", "The scheme 'http' is not supported."),
        ("not a uri", "'not a uri' is not a libvirt URI."),
        (UNREACHABLE_URI, f"Could not connect to {UNREACHABLE_URI}"),
    ],
)
def test_it_answers_a_bad_uri_with_a_field_error(admin_api, uri, problem):
    response = admin_api.post("/api/v1/hosts/", {"name": "bad", "uri": uri}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"uri"}
    assert len(body["uri"]) == 1
    assert body["uri"][0].startswith(problem)
    assert not Host.objects.exists()
    assert not Job.objects.exists()


def test_it_answers_a_missing_field_with_a_field_error(admin_api):
    response = admin_api.post("/api/v1/hosts/", {"uri": FAKE_URI}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"name"}
    assert not Host.objects.exists()


def test_it_refuses_a_duplicate_host_name(admin_api, host):
    response = admin_api.post("/api/v1/hosts/", {"name": "kvm01", "uri": FAKE_URI}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"name"}
    assert Host.objects.count() == 1


# --- refresh --------------------------------------------------------------------------------


def test_it_queues_a_refresh_and_answers_202(admin_api, host, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_api.post(f"/api/v1/hosts/{host.pk}/refresh/")

    assert response.status_code == 202
    job = Job.objects.get(host=host)
    assert response.json() == {"job": job.pk}
    assert (job.kind, job.state) == (JobKind.HOST_REFRESH, "queued")
    assert queued_tasks(callbacks) == [("panel.refresh_host", (job.pk,))]
    event = AuditEvent.objects.get(action="host.refresh")
    assert (event.result, event.detail) == ("success", f"job #{job.pk}")
    followed = admin_api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert (followed["state"], followed["progress"], followed["kind"]) == (
        "queued",
        0,
        "host.refresh",
    )


def test_it_rejects_get_on_refresh(admin_api, host):
    response = admin_api.get(f"/api/v1/hosts/{host.pk}/refresh/")

    assert response.status_code == 405
    assert not Job.objects.exists()


def test_it_answers_409_to_a_refresh_while_one_is_queued(admin_api, host):
    first = admin_api.post(f"/api/v1/hosts/{host.pk}/refresh/").json()["job"]

    response = admin_api.post(f"/api/v1/hosts/{host.pk}/refresh/")

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"A refresh of kvm01 is already under way (job #{first}); wait for it."
    }
    assert Job.objects.count() == 1


def test_it_refuses_refresh_to_a_non_admin(operator_api, host):
    response = operator_api.post(f"/api/v1/hosts/{host.pk}/refresh/")

    assert response.status_code == 403
    assert not Job.objects.exists()
    event = AuditEvent.objects.get()
    assert (event.result, event.username) == ("denied", "alice")


def test_it_answers_404_to_a_refresh_out_of_scope(outsider_api, host):
    assert outsider_api.post(f"/api/v1/hosts/{host.pk}/refresh/").status_code == 404
    assert outsider_api.post("/api/v1/hosts/999/refresh/").status_code == 404
    assert not Job.objects.exists()


# --- delete ---------------------------------------------------------------------------------


def test_it_deletes_a_host(admin_api, host):
    response = admin_api.delete(f"/api/v1/hosts/{host.pk}/")

    assert response.status_code == 204
    assert not Host.objects.exists()
    assert admin_api.get(f"/api/v1/hosts/{host.pk}/").status_code == 404
    event = AuditEvent.objects.get(action="host.delete")
    assert (event.result, event.target) == ("success", "kvm01")


def test_it_refuses_delete_to_a_non_admin(operator_api, outsider_api, host):
    assert operator_api.delete(f"/api/v1/hosts/{host.pk}/").status_code == 403
    assert outsider_api.delete(f"/api/v1/hosts/{host.pk}/").status_code == 404
    assert Host.objects.filter(pk=host.pk).exists()


# --- jobs -------------------------------------------------------------------------------------


def test_it_shows_a_job_with_the_contract_fields(admin_api, admin_user, host):
    job = jobs.create_job(
        JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(admin_user), host=host
    )
    with jobs.running(job.pk):
        jobs.report(job.pk, progress=50, message="Halfway", log_line="reading")

    body = admin_api.get(f"/api/v1/jobs/{job.pk}/").json()

    assert JOB_FIELDS <= set(body)
    assert body["id"] == job.pk
    assert (body["kind"], body["state"], body["progress"]) == ("host.refresh", "succeeded", 100)
    assert (body["message"], body["target"], body["user"]) == ("Halfway", "host:kvm01", "admin")
    assert body["log"].endswith(" reading\n")
    assert body["created"] and body["started"] and body["finished"]


def test_it_lists_only_the_callers_jobs_to_a_plain_user(
    admin_user, plain_user, user_api, admin_api
):
    theirs = jobs.create_job(JobKind.HOST_REFRESH, target="host:a", actor=Actor(admin_user))
    mine = jobs.create_job(JobKind.HOST_REFRESH, target="host:b", actor=Actor(plain_user))

    listed = user_api.get("/api/v1/jobs/").json()

    assert listed["count"] == 1
    assert [j["id"] for j in listed["results"]] == [mine.pk]
    assert user_api.get(f"/api/v1/jobs/{theirs.pk}/").status_code == 404
    everything = admin_api.get("/api/v1/jobs/").json()
    assert {j["id"] for j in everything["results"]} == {theirs.pk, mine.pk}


def test_it_cancels_a_queued_job(user_api, plain_user):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:b", actor=Actor(plain_user))

    response = user_api.post(f"/api/v1/jobs/{job.pk}/cancel/")

    assert response.status_code == 200
    assert (response.json()["state"], response.json()["message"]) == (
        "cancelled",
        "Cancelled before it started.",
    )
    job.refresh_from_db()
    assert job.state == "cancelled"


def test_it_answers_409_to_cancelling_a_finished_job(user_api, plain_user):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:b", actor=Actor(plain_user))
    with jobs.running(job.pk):
        pass

    response = user_api.post(f"/api/v1/jobs/{job.pk}/cancel/")

    assert response.status_code == 409
    assert response.json() == {"detail": f"Job #{job.pk} has already finished (succeeded)."}


def test_it_hides_another_users_job_from_cancel(user_api, admin_user):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:a", actor=Actor(admin_user))

    assert user_api.post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 404
    job.refresh_from_db()
    assert job.state == "queued"


def test_it_rejects_get_on_cancel(user_api, plain_user):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:b", actor=Actor(plain_user))

    assert user_api.get(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 405
    job.refresh_from_db()
    assert job.state == "queued"


# --- schema ----------------------------------------------------------------------------------


def test_it_serves_an_openapi_document(user_api):
    response = user_api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/hosts/"])
    assert "delete" in paths["/api/v1/hosts/{id}/"]
    assert "202" in paths["/api/v1/hosts/{id}/refresh/"]["post"]["responses"]
    assert "get" in paths["/api/v1/jobs/{id}/"]
    assert "post" in paths["/api/v1/auth/token/"]


@pytest.mark.parametrize(
    "path", ["/api/v1/hosts/", "/api/v1/users/", "/api/v1/projects/", "/api/v1/audit-events/"]
)
def test_a_search_with_a_nul_is_refused_with_a_detail_like_any_refusal(admin_client, path):
    answer = admin_client.get(path, {"search": "web\x00"})

    assert answer.status_code == 400
    assert answer.json() == {"detail": "Null characters are not allowed."}
