"""Jobs on the running stack: progress and host state pushed to browsers over
websockets (and refused, with 4401 or 4404, to those who may not see them), and a
refresh run by the real Celery worker."""

from __future__ import annotations

import json
import time
import urllib.request
from urllib.error import HTTPError

import pytest

from panel import jobs, services
from panel.actors import Actor
from panel.choices import JobKind
from panel.hypervisor import DomainInfo
from panel.models import Host, Project
from tests.conftest import ADMIN_PASSWORD
from tests.stack import open_ws, refusal
from vms.models import VirtualMachine
from vms.services import sync_domain

from .conftest import FAKE_URI, STAMPED, make_host

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
