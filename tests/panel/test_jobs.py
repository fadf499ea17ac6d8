"""Jobs: the progress helper every task reports through, cancelling, the refresh
task itself, and, on the running stack, progress pushed to browsers over
websockets and a refresh run by the real Celery worker."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from urllib.error import HTTPError

import pytest

from panel import jobs, services
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.hypervisor import DomainInfo
from panel.models import AuditEvent, Host, Job, Project
from panel.tasks import refresh_host_task
from tests.conftest import ADMIN_PASSWORD
from tests.stack import open_ws, refusal
from vms.models import VirtualMachine
from vms.services import sync_domain

from .conftest import FAKE_URI, UNREACHABLE_URI, make_host, rows

STAMPED = re.compile(r"^\d\d:\d\d:\d\d (.*)$")


def log_lines(job: Job) -> list[str]:
    """The job's log without the timestamps, asserting every line has one."""
    lines = job.log.splitlines()
    stripped = [STAMPED.match(line) for line in lines]
    assert all(stripped), lines
    return [m.group(1) for m in stripped]


@pytest.fixture
def job(db, admin_user, host) -> Job:
    return jobs.create_job(
        JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(admin_user), host=host
    )


# --- secrets -----------------------------------------------------------------------


def test_it_keeps_a_jobs_secrets_out_of_what_it_shows_and_drops_them_when_it_ends(
    db, admin_user, host
):
    queued = jobs.queue(
        JobKind.HOST_REFRESH,
        refresh_host_task,
        host,
        target="host:kvm01",
        spec={"host": host.pk},
        actor=Actor(admin_user),
        host=host,
        project=None,
        action="host.refresh",
        secrets={"user_data": "#cloud-config\npassword: hunter2\n"},
    )
    assert jobs.secrets_of(queued.pk) == {"user_data": "#cloud-config\npassword: hunter2\n"}
    assert "hunter2" not in json.dumps(jobs.serialize(queued))
    with jobs.running(queued.pk):
        assert jobs.secrets_of(queued.pk)  # the task still has them
    assert jobs.secrets_of(queued.pk) == {}
    assert "hunter2" not in AuditEvent.objects.get(action="host.refresh").detail


# --- report() and running() -------------------------------------------------------


def test_it_reports_progress_message_and_timestamped_log_lines(job):
    jobs.report(job.pk, progress=40, message="half", log_line="x")
    jobs.report(job.pk, log_line="y")

    job.refresh_from_db()
    assert job.progress == 40
    assert job.message == "half"
    assert log_lines(job) == ["x", "y"]


def test_it_keeps_progress_between_0_and_100(job):
    jobs.report(job.pk, progress=140)
    job.refresh_from_db()
    assert job.progress == 100

    jobs.report(job.pk, progress=-5)
    job.refresh_from_db()
    assert job.progress == 0


def test_it_runs_a_job_to_success(job):
    with jobs.running(job.pk) as running:
        assert running is not None
        inside = Job.objects.get(pk=job.pk)
        jobs.report(job.pk, progress=60, message="Reading domains")

    assert inside.state == "running"
    assert inside.started is not None
    job.refresh_from_db()
    assert job.state == "succeeded"
    assert job.progress == 100
    assert job.message == "Reading domains"
    assert job.finished >= job.started


def test_it_says_done_when_a_job_left_no_message(job):
    with jobs.running(job.pk):
        pass

    job.refresh_from_db()
    assert (job.state, job.message) == ("succeeded", "Done.")


def test_it_marks_a_job_failed_on_an_unexpected_error(job):
    with pytest.raises(RuntimeError), jobs.running(job.pk):
        jobs.report(job.pk, progress=30)
        raise RuntimeError("disk on fire")

    job.refresh_from_db()
    assert job.state == "failed"
    assert job.message == "disk on fire"
    assert job.progress == 30
    assert job.finished is not None
    assert log_lines(job) == ["failed: disk on fire"]


def test_it_marks_a_job_failed_with_the_service_error_message_without_raising(job):
    with jobs.running(job.pk):
        raise ServiceError("kvm01 is down: Connection refused. Start libvirtd there.")

    job.refresh_from_db()
    assert job.state == "failed"
    assert job.message == "kvm01 is down: Connection refused. Start libvirtd there."
    assert log_lines(job) == ["failed: kvm01 is down: Connection refused. Start libvirtd there."]


def test_it_does_not_run_a_finished_job_again(job):
    with jobs.running(job.pk):
        jobs.report(job.pk, message="first run")
    job.refresh_from_db()
    before = (job.state, job.progress, job.message, job.log, job.started, job.finished)

    with jobs.running(job.pk) as running:
        assert running is None

    job.refresh_from_db()
    assert (job.state, job.progress, job.message, job.log, job.started, job.finished) == before


def test_it_yields_nothing_for_a_job_that_is_gone(db):
    with jobs.running(987654) as running:
        assert running is None


# --- cancelling ----------------------------------------------------------------------


def test_it_cancels_a_queued_job_at_once(job, admin_user):
    services.cancel_job(job, actor=Actor(admin_user))

    job.refresh_from_db()
    assert job.state == "cancelled"
    assert job.message == "Cancelled before it started."
    assert job.finished is not None
    event = AuditEvent.objects.get(action="job.cancel")
    assert (event.result, event.username, event.target) == (
        "success",
        "admin",
        f"Host refresh #{job.pk}",
    )
    # The worker that picks it up later leaves it alone.
    with jobs.running(job.pk) as running:
        assert running is None


def test_it_stops_a_running_job_at_its_next_report(job, admin_user):
    with jobs.running(job.pk):
        services.cancel_job(job, actor=Actor(admin_user))
        assert Job.objects.get(pk=job.pk).state == "running"
        jobs.report(job.pk, progress=50, log_line="still working")
        pytest.fail("report() should have stopped the cancelled job")

    job.refresh_from_db()
    assert job.state == "cancelled"
    assert job.message == "Cancelled."
    assert log_lines(job) == ["still working", "cancelled on request"]


def test_it_refuses_to_cancel_a_finished_job(job, admin_user):
    with jobs.running(job.pk):
        pass

    with pytest.raises(ConflictError, match=rf"Job #{job.pk} has already finished \(succeeded\)"):
        services.cancel_job(job, actor=Actor(admin_user))

    job.refresh_from_db()
    assert job.state == "succeeded"
    assert not job.cancel_requested
    assert not AuditEvent.objects.filter(action="job.cancel").exists()


def test_it_cancels_a_job_from_its_page(admin_client, job):
    response = admin_client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert response.redirect_chain == [(f"/jobs/{job.pk}/", 302)]
    job.refresh_from_db()
    assert job.state == "cancelled"
    assert "Cancelled before it started." in rows(response, "//*[@data-job-message]")
    assert rows(response, "//form[contains(@action, '/cancel/')]/button") == []


def test_it_says_a_finished_job_cannot_be_cancelled(admin_client, job):
    with jobs.running(job.pk):
        pass

    response = admin_client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert f"Job #{job.pk} has already finished (succeeded)." in rows(
        response, "//div[@role='alert']"
    )


def test_it_rejects_get_on_cancel(admin_client, job):
    response = admin_client.get(f"/jobs/{job.pk}/cancel/")

    assert response.status_code == 405
    job.refresh_from_db()
    assert job.state == "queued"


def test_it_hides_another_users_job_from_cancel(user_client, job):
    response = user_client.post(f"/jobs/{job.pk}/cancel/")

    assert response.status_code == 404
    job.refresh_from_db()
    assert job.state == "queued"


def test_it_sends_an_anonymous_cancel_to_login(client, job):
    response = client.post(f"/jobs/{job.pk}/cancel/")

    assert response.status_code == 302
    assert response.url.startswith("/login/")
    job.refresh_from_db()
    assert job.state == "queued"


# --- the refresh task, run in this process ---------------------------------------------


def test_it_refreshes_a_hosts_inventory_through_its_job(db, admin_user):
    host = make_host("fake", uri=FAKE_URI, facts={}, checks=[], domain_type="")
    job = services.refresh_host(host, actor=Actor(admin_user))

    refresh_host_task(job.pk)

    job.refresh_from_db()
    host.refresh_from_db()
    assert (job.state, job.progress, job.message) == ("succeeded", 100, "Refresh complete.")
    assert (job.result["domains"], job.result["missing"]) == (1, 0)
    assert "Found 1 domains, 1 pools, 1 networks" in log_lines(job)
    assert host.facts["hostname"]
    assert host.checks == [
        {
            "name": "Hypervisor",
            "status": "warn",
            "detail": "This is libvirt's test driver: a simulated host.",
        }
    ]
    vm = VirtualMachine.objects.get(host=host)
    assert (vm.name, vm.state) == ("test", "running")
    assert list(host.pools.values_list("name", flat=True)) == ["default-pool"]
    assert list(host.networks.values_list("name", flat=True)) == ["default"]


def test_it_fails_the_refresh_of_an_unreachable_host_and_marks_it_down(db, admin_user):
    host = make_host("gone", uri=UNREACHABLE_URI)
    job = services.refresh_host(host, actor=Actor(admin_user))

    refresh_host_task(job.pk)

    job.refresh_from_db()
    host.refresh_from_db()
    assert job.state == "failed"
    assert job.message.startswith("gone is down: Cannot connect to qemu+tcp://127.0.0.1:1/system")
    assert host.state == "down"
    assert "Connection refused" in host.last_error


def test_it_fails_the_refresh_of_a_removed_host(db, admin_user):
    host = make_host("fake", uri=FAKE_URI)
    job = services.refresh_host(host, actor=Actor(admin_user))
    services.delete_host(host, actor=Actor(admin_user))

    refresh_host_task(job.pk)

    job.refresh_from_db()
    assert (job.state, job.message) == ("failed", "The host of this job was removed.")


# --- on the running stack ----------------------------------------------------------------


def session_cookie(client, user) -> str:
    client.force_login(user)
    return client.cookies["sessionid"].value


def api(stack, method: str, path: str, token: str | None = None, data=None):
    """One request to the running web server: (status, decoded JSON body)."""
    headers = {"Accept": "application/json"}
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(stack.url + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.mark.stack
def test_it_pushes_job_progress_to_a_websocket(stack, transactional_db, client, plain_user):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(plain_user))
    sessionid = session_cookie(client, plain_user)

    with open_ws(stack, f"/ws/jobs/{job.pk}/", sessionid) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        jobs.report(job.pk, progress=40, message="half", log_line="x")
        update = json.loads(ws.recv(timeout=10))

    assert snapshot["type"] == "job.update"
    assert snapshot["job"]["id"] == job.pk
    assert (snapshot["job"]["state"], snapshot["job"]["progress"]) == ("queued", 0)
    assert update["type"] == "job.update"
    assert (update["job"]["progress"], update["job"]["message"]) == (40, "half")
    assert STAMPED.match(update["job"]["log"].splitlines()[-1]).group(1) == "x"


@pytest.mark.stack
def test_it_refuses_an_anonymous_websocket(stack, transactional_db, plain_user):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(plain_user))

    outcome = refusal(stack, f"/ws/jobs/{job.pk}/")

    assert not outcome.startswith("accepted"), outcome


@pytest.mark.stack
def test_it_refuses_a_websocket_on_another_users_job(
    stack, transactional_db, client, admin_user, plain_user
):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(admin_user))

    outcome = refusal(stack, f"/ws/jobs/{job.pk}/", session_cookie(client, plain_user))

    assert not outcome.startswith("accepted"), outcome


CLOSE_BEFORE_ACCEPT = (
    "panel/consumers.py ScopedConsumer.connect() calls close(code=...) before accept(); "
    "the web server then rejects the handshake with HTTP 403, so the 4401/4404 codes that "
    "static/panel/live.js looks for never arrive and the browser reconnects forever."
)


@pytest.mark.stack
def test_it_closes_an_anonymous_websocket_with_4401(stack, transactional_db, plain_user):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(plain_user))

    assert refusal(stack, f"/ws/jobs/{job.pk}/") == "close 4401"


@pytest.mark.stack
def test_it_closes_a_websocket_on_another_users_job_with_4404(
    stack, transactional_db, client, admin_user, plain_user
):
    job = jobs.create_job(JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(admin_user))

    outcome = refusal(stack, f"/ws/jobs/{job.pk}/", session_cookie(client, plain_user))

    assert outcome == "close 4404"


@pytest.mark.stack
def test_it_pushes_host_state_changes_to_a_websocket(
    stack, transactional_db, client, operator_user, outsider_user
):
    host = make_host("kvm01")
    outcome = refusal(stack, f"/ws/hosts/{host.pk}/", session_cookie(client, outsider_user))
    assert not outcome.startswith("accepted"), outcome

    with open_ws(stack, f"/ws/hosts/{host.pk}/", session_cookie(client, operator_user)) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        services.set_host_state(host, "down", "Connection refused")
        update = json.loads(ws.recv(timeout=10))

    assert snapshot["type"] == "host.update"
    assert (snapshot["host"]["name"], snapshot["host"]["state"]) == ("kvm01", "up")
    assert update["type"] == "host.update"
    # The error may name the host's address: a non-admin learns only that it is unreachable.
    assert (update["host"]["state"], update["host"]["last_error"]) == (
        "down",
        "The panel cannot reach this host; an admin sees why on the host's page.",
    )


@pytest.mark.stack
def test_it_does_not_push_other_projects_vms_to_a_host_websocket(
    stack, transactional_db, client, operator_user
):
    host = make_host("kvm01")
    vm = VirtualMachine.objects.create(
        id="0d7a3c57-1f0e-4c1e-9a57-3b0f2f8f0a01",
        name="theirs",
        host=host,
        project=Project.objects.create(name="other"),
    )
    info = DomainInfo(
        uuid=str(vm.pk),
        name="theirs",
        state="running",
        vcpus=1,
        memory_mib=64,
        persistent=True,
        autostart=False,
    )

    pushed = []
    with open_ws(stack, f"/ws/hosts/{host.pk}/", session_cookie(client, operator_user)) as ws:
        ws.recv(timeout=10)
        sync_domain(host, info)
        services.set_host_state(host, "up")  # a marker: pushes arrive in order
        while (message := json.loads(ws.recv(timeout=10)))["type"] != "host.update":
            pushed.append(message["vm"]["name"])

    assert pushed == []


@pytest.mark.stack
def test_it_refreshes_an_added_host_in_the_worker(stack, transactional_db, client, admin_user):
    status, body = api(
        stack,
        "POST",
        "/api/v1/auth/token/",
        data={"username": "admin", "password": ADMIN_PASSWORD},
    )
    assert status == 200, body
    token = body["token"]

    status, host = api(stack, "POST", "/api/v1/hosts/", token, {"name": "fake", "uri": FAKE_URI})
    assert status == 201, host
    status, listing = api(stack, "GET", f"/api/v1/jobs/?host={host['id']}", token)
    assert status == 200, listing
    assert [j["kind"] for j in listing["results"]] == ["host.refresh"]
    job_id = listing["results"][0]["id"]

    seen = []
    with open_ws(stack, f"/ws/jobs/{job_id}/", session_cookie(client, admin_user)) as ws:
        deadline = time.monotonic() + 60
        while not seen or seen[-1]["state"] not in {"succeeded", "failed", "cancelled"}:
            assert time.monotonic() < deadline, f"job still {seen[-1:]} after 60 s"
            seen.append(json.loads(ws.recv(timeout=60))["job"])

    deadline = time.monotonic() + 60
    while True:
        status, job = api(stack, "GET", f"/api/v1/jobs/{job_id}/", token)
        assert status == 200, job
        if job["state"] not in {"queued", "running"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    assert job["state"] == "succeeded", job
    assert (job["progress"], job["message"]) == (100, "Refresh complete.")
    assert job["user"] == "admin"
    assert "Found 1 domains, 1 pools, 1 networks" in job["log"]
    progress = [j["progress"] for j in seen]
    assert progress == sorted(progress)
    assert (seen[-1]["state"], progress[-1]) == ("succeeded", 100)
    vm = VirtualMachine.objects.get(name="test")
    assert (vm.host_id, vm.state) == (host["id"], "running")
    assert Host.objects.get(pk=host["id"]).checks[0]["name"] == "Hypervisor"


@pytest.mark.sqlite
def test_it_scrubs_the_secrets_old_create_jobs_kept_in_their_result(transactional_db):
    """Create jobs from before Job.secrets: a finished one loses its user-data and
    kickstart; one still queued keeps them, as its secrets, for its task."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("panel", "0004_job_task")]
    after = [("panel", "0006_scrub_secrets_from_job_results")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    OldJob = executor.loader.project_state(before).apps.get_model("panel", "Job")
    install = {"method": "cloud-image", "user_data": "#cloud-config\npasswd: $6$x\n"}
    done = OldJob.objects.create(
        kind="vm.create", state="succeeded", target="vm:a", result={"install": dict(install)}
    )
    waiting = OldJob.objects.create(
        kind="vm.create", state="queued", target="vm:b", result={"install": dict(install)}
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    Job = executor.loader.project_state(after).apps.get_model("panel", "Job")
    done, waiting = Job.objects.get(pk=done.pk), Job.objects.get(pk=waiting.pk)
    assert done.result == waiting.result == {"install": {"method": "cloud-image"}}
    assert done.secrets == {}
    assert waiting.secrets == {"user_data": "#cloud-config\npasswd: $6$x\n"}
    latest = MigrationExecutor(connection)  # the schema as the next test expects
    latest.migrate(latest.loader.graph.leaf_nodes())
