"""Which hosts and websockets a persona reaches beyond the permission matrix: a project
without a host list sees every host, a hidden host's name stays secret from a non-admin
adding a host, and a host both projects use shows each only its own VMs, on its page
and over its websocket; on the running stack, a job's websocket sends its snapshot to a
member of its project and closes with 4404 on an outsider.
"""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from panel import services
from panel.actors import Actor
from panel.models import Host
from vms import services as vm_services
from vms.models import VirtualMachine

from .conftest import make_vm

# --- beyond the table --------------------------------------------------------------------


def test_it_lets_a_project_without_a_host_list_see_every_host(world, client_for, admin, beta):
    services.update_project(beta, allowed_hosts=[], actor=Actor(admin))

    body = client_for("outsider").get("/hosts/").content.decode()

    assert "kvm-alpha" in body
    assert "kvm-beta" in body


def test_it_keeps_a_hidden_hosts_name_secret_from_a_non_admin_adding_a_host(world, api_for):
    # Answering "a host with this name already exists" would tell the outsider
    # that alpha has a host called kvm-alpha.
    response = api_for("outsider").post(
        "/api/v1/hosts/",
        {"name": "kvm-alpha", "uri": "qemu+ssh://root@elsewhere.example.test/system"},
        content_type="application/json",
    )

    assert response.status_code == 403, response.content


@pytest.fixture
def shared_host(world, admin):
    """A host both projects may use, each with a VM on it."""
    host = Host.objects.create(name="kvm-shared", uri="test:///shared", state="up")
    for team in world.teams.values():
        services.update_project(team.project, allowed_hosts=[team.host, host], actor=Actor(admin))
    alpha_vm = make_vm("alpha-shared-vm", host, world.teams["alpha"].project, admin, 1, 128)
    beta_vm = make_vm("beta-shared-vm", host, world.teams["beta"].project, admin, 1, 128)
    return host, alpha_vm, beta_vm


def test_it_shows_only_their_projects_vms_on_a_shared_host_page(shared_host, client_for):
    host, alpha_vm, beta_vm = shared_host

    response = client_for("outsider").get(f"/hosts/{host.pk}/")

    assert response.status_code == 200
    body = response.content.decode()
    assert beta_vm.name in body
    assert alpha_vm.name not in body


# --- websockets on the running stack -----------------------------------------------------


def open_ws(stack, path: str, sessionid: str | None):
    headers = {"Origin": stack.url}
    if sessionid:
        headers["Cookie"] = f"sessionid={sessionid}"
    return connect(stack.ws_url + path, additional_headers=headers, open_timeout=10)


def session_of(client_for, persona: str) -> str:
    return client_for(persona).cookies["sessionid"].value


def refusal(stack, path: str, sessionid: str | None) -> str:
    """How the server turned the websocket away: 'close <code>' or 'HTTP <status>'."""
    try:
        with open_ws(stack, path, sessionid) as ws:
            message = ws.recv(timeout=10)
    except InvalidStatus as exc:
        return f"HTTP {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"close {exc.rcvd.code if exc.rcvd else None}"
    return f"accepted and sent {message}"


@pytest.mark.stack
def test_it_sends_the_job_snapshot_to_a_member_of_its_project(
    stack, transactional_db, world, client_for
):
    job = world.teams["alpha"].job

    with open_ws(stack, f"/ws/jobs/{job.pk}/", session_of(client_for, "member")) as ws:
        snapshot = json.loads(ws.recv(timeout=10))

    assert snapshot["type"] == "job.update"
    assert (snapshot["job"]["id"], snapshot["job"]["target"]) == (job.pk, "vm:alpha-web")


@pytest.mark.stack
@pytest.mark.parametrize("kind", ["jobs", "hosts"])
def test_it_closes_an_outsiders_websocket_on_another_projects_object_with_4404(
    kind, stack, transactional_db, world, client_for
):
    team = world.teams["alpha"]
    object_id = team.job.pk if kind == "jobs" else team.host.pk

    outcome = refusal(stack, f"/ws/{kind}/{object_id}/", session_of(client_for, "outsider"))

    assert outcome == "close 4404"


@pytest.mark.stack
def test_it_pushes_only_their_projects_vm_changes_on_a_shared_host_websocket(
    stack, transactional_db, shared_host, client_for
):
    host, alpha_vm, beta_vm = shared_host

    with open_ws(stack, f"/ws/hosts/{host.pk}/", session_of(client_for, "outsider")) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        vm_services.mark_missing(host, str(alpha_vm.pk))
        vm_services.mark_missing(host, str(beta_vm.pk))
        first = json.loads(ws.recv(timeout=10))

    assert snapshot["host"]["name"] == "kvm-shared"
    assert VirtualMachine.objects.get(pk=alpha_vm.pk).state == "missing"
    assert first["vm"]["name"] == beta_vm.name, first
