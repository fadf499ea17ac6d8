"""Who may see and do what: every page and API endpoint, for every persona, on an
object of their own project and on one of the other project.

The table below is the contract of panel/permissions.py as a user meets it:
anonymous → the login page (pages) or 401 (API); out of scope → 404; in scope
but not allowed → 403; allowed → what the view answers; GET on an action → 405.
Every answer given to someone of one team is also searched for the names of
the other team's things (projects, hosts, VMs, pools, networks, jobs, audit
targets, people): none may appear, whatever the status.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from panel import services
from panel.actors import Actor
from panel.models import Host
from vms import services as vm_services
from vms.models import VirtualMachine

from .conftest import HOME, PERSONAS, World, make_vm, texts

ANONYMOUS = "anonymous"
EVERYONE = (*PERSONAS, ANONYMOUS)

# What must never reach a team's people: every name of the other team's things
# contains the other project's name (and beta's only person is the outsider).
LEAKS = {"alpha": re.compile(r"beta|outsider", re.I), "beta": re.compile(r"alpha", re.I)}
# CSRF tokens are 64 random letters and digits: one holds "beta" about once in
# 15,000 pages, so they are blanked out before searching.
CSRF_TOKEN = re.compile(r"\b[A-Za-z0-9]{64}\b")


@dataclass(frozen=True)
class Case:
    """One request: method and path (with {placeholders} filled per persona), the
    side of the object it names ("own": the persona's project, "other": the other
    one), the body, and the exact status each persona gets."""

    name: str
    method: str
    path: str
    expect: dict[str, int]
    side: str = "own"
    data: dict[str, Any] | None = None
    api: bool = False
    # Names of the persona's own things that a 200 answer must show.
    shows: tuple[str, ...] = ()
    shows_not_for: tuple[str, ...] = ()
    leak_check: bool = True
    # Give the persona an API token first (for revoking it).
    with_token: bool = False


def codes(everyone: int, **per: int) -> dict[str, int]:
    return {p: per.get(p, everyone) for p in PERSONAS}


ADMIN_ONLY_PAGE = codes(403, admin=200)
SCOPED = codes(200)
OUT_OF_SCOPE = codes(404, admin=200)
GET_ON_ACTION = codes(405)

NEW_USER = {"username": "newbie", "password": "Silver-meadow-62r"}

CASES = [
    # --- pages -------------------------------------------------------------------------
    Case("dashboard", "GET", "/", SCOPED, shows=("host", "job")),
    Case("host list", "GET", "/hosts/", SCOPED, shows=("host",)),
    Case("host detail own", "GET", "/hosts/{host}/", SCOPED, shows=("host",)),
    Case("host detail other", "GET", "/hosts/{host}/", OUT_OF_SCOPE, side="other"),
    Case("host add form", "GET", "/hosts/add/", ADMIN_ONLY_PAGE),
    Case(
        "host add bad uri",
        "POST",
        "/hosts/add/",
        codes(403, admin=400),
        data={"name": "kvm-new", "uri": "bogus"},
    ),
    Case("host refresh own", "POST", "/hosts/{host}/refresh/", codes(403, admin=302)),
    Case(
        "host refresh other", "POST", "/hosts/{host}/refresh/", codes(404, admin=302), side="other"
    ),
    Case("host refresh by GET", "GET", "/hosts/{host}/refresh/", GET_ON_ACTION),
    Case("host delete own", "POST", "/hosts/{host}/delete/", codes(403, admin=302)),
    Case("host delete other", "POST", "/hosts/{host}/delete/", codes(404, admin=302), side="other"),
    Case("host delete by GET", "GET", "/hosts/{host}/delete/", GET_ON_ACTION),
    Case("job list", "GET", "/jobs/", SCOPED, shows=("job",)),
    Case("job detail own", "GET", "/jobs/{job}/", SCOPED, shows=("job",)),
    Case("job detail other", "GET", "/jobs/{job}/", OUT_OF_SCOPE, side="other"),
    # The own job was started by the member (alpha) or the outsider (beta).
    Case("job cancel own", "POST", "/jobs/{job}/cancel/", codes(302, viewer=403)),
    Case("job cancel other", "POST", "/jobs/{job}/cancel/", codes(404, admin=302), side="other"),
    Case("job cancel by GET", "GET", "/jobs/{job}/cancel/", GET_ON_ACTION),
    Case("project list", "GET", "/projects/", SCOPED, shows=("project",)),
    Case("project detail own", "GET", "/projects/{project}/", SCOPED, shows=("project", "vm")),
    Case("project detail other", "GET", "/projects/{project}/", OUT_OF_SCOPE, side="other"),
    Case("project edit form own", "GET", "/projects/{project}/edit/", ADMIN_ONLY_PAGE),
    Case("project edit form other", "GET", "/projects/{project}/edit/", OUT_OF_SCOPE, side="other"),
    Case(
        "project edit own",
        "POST",
        "/projects/{project}/edit/",
        codes(403, admin=302),
        data={"name": "renamed", "description": "changed"},
    ),
    Case(
        "project edit other",
        "POST",
        "/projects/{project}/edit/",
        codes(404, admin=302),
        side="other",
        data={"name": "renamed", "description": "changed"},
    ),
    Case("project add form", "GET", "/projects/add/", ADMIN_ONLY_PAGE),
    Case("project add", "POST", "/projects/add/", codes(403, admin=302), data={"name": "gamma"}),
    Case(
        "member add own",
        "POST",
        "/projects/{project}/members/",
        codes(403, admin=302, operator=302),
        data={"username": "newcomer", "role": "viewer"},
    ),
    Case(
        "member add other",
        "POST",
        "/projects/{project}/members/",
        codes(404, admin=302),
        side="other",
        data={"username": "newcomer", "role": "viewer"},
    ),
    Case("member add by GET", "GET", "/projects/{project}/members/", GET_ON_ACTION),
    Case(
        "member remove own",
        "POST",
        "/projects/{project}/members/{member}/remove/",
        codes(403, admin=302, operator=302),
    ),
    Case(
        "member remove other",
        "POST",
        "/projects/{project}/members/{member}/remove/",
        codes(404, admin=302),
        side="other",
    ),
    Case(
        "member remove by GET",
        "GET",
        "/projects/{project}/members/{member}/remove/",
        GET_ON_ACTION,
    ),
    Case("user list", "GET", "/users/", ADMIN_ONLY_PAGE),
    Case("user create", "POST", "/users/", codes(403, admin=302), data=NEW_USER),
    Case(
        "user disable own",
        "POST",
        "/users/{member}/active/",
        codes(403, admin=302),
        data={"active": "0"},
    ),
    Case(
        "user disable other",
        "POST",
        "/users/{member}/active/",
        codes(403, admin=302),
        side="other",
        data={"active": "0"},
    ),
    Case("user disable by GET", "GET", "/users/{member}/active/", GET_ON_ACTION),
    Case("user password form", "GET", "/users/{member}/password/", ADMIN_ONLY_PAGE),
    Case(
        "user password set",
        "POST",
        "/users/{member}/password/",
        codes(403, admin=302),
        data={"password": "Hidden-valley-39p"},
    ),
    # The admin is in no project: their account page says "all projects" instead.
    Case("account", "GET", "/account/", SCOPED, shows=("project",), shows_not_for=("admin",)),
    Case("token create", "POST", "/account/token/", codes(302)),
    Case("token create by GET", "GET", "/account/token/", GET_ON_ACTION),
    Case("token revoke", "POST", "/account/token/revoke/", codes(302), with_token=True),
    Case("token revoke by GET", "GET", "/account/token/revoke/", GET_ON_ACTION),
    Case("audit list", "GET", "/audit/", codes(403, admin=200, operator=200), shows=("event",)),
    Case(
        "audit export",
        "GET",
        "/audit/export.csv",
        codes(403, admin=200, operator=200),
        shows=("event",),
    ),
    Case("vm list", "GET", "/vms/", SCOPED, shows=("vm",)),
    # {vm}: the member's VM in alpha, the outsider's in beta. {vm2}: in alpha the
    # operator's VM (a colleague's, for the member); beta has only the outsider's.
    Case("vm detail own", "GET", "/vms/{vm}/", SCOPED, shows=("vm1",)),
    Case("vm detail other", "GET", "/vms/{vm}/", OUT_OF_SCOPE, side="other"),
    Case("vm shutdown own", "POST", "/vms/{vm}/shutdown/", codes(302, viewer=403)),
    Case(
        "vm shutdown colleagues",
        "POST",
        "/vms/{vm2}/shutdown/",
        codes(302, member=403, viewer=403),
    ),
    Case("vm shutdown other", "POST", "/vms/{vm}/shutdown/", codes(404, admin=302), side="other"),
    Case("vm shutdown by GET", "GET", "/vms/{vm}/shutdown/", GET_ON_ACTION),
    Case("vm delete form own", "GET", "/vms/{vm}/delete/", codes(200, viewer=403)),
    Case(
        "vm delete form colleagues",
        "GET",
        "/vms/{vm2}/delete/",
        codes(200, member=403, viewer=403),
    ),
    Case("vm delete form other", "GET", "/vms/{vm}/delete/", OUT_OF_SCOPE, side="other"),
    Case("vm xml own", "GET", "/vms/{vm}/xml/", codes(403, admin=200)),
    Case("vm xml other", "GET", "/vms/{vm}/xml/", OUT_OF_SCOPE, side="other"),
    Case(
        "vm assign own",
        "POST",
        "/vms/{vm}/assign/",
        codes(403, admin=302),
        data={"project": "{project}"},
    ),
    Case(
        "vm assign other",
        "POST",
        "/vms/{vm}/assign/",
        codes(404, admin=302),
        side="other",
        data={"project": "{project}"},
    ),
    Case("pool list", "GET", "/storage/", SCOPED, shows=("pool",)),
    Case("network list", "GET", "/networks/", SCOPED, shows=("network",)),
    # --- API ---------------------------------------------------------------------------
    Case("api root", "GET", "/api/v1/", SCOPED, api=True),
    Case("api users", "GET", "/api/v1/users/", SCOPED, api=True, shows=("self",)),
    Case(
        "api user create", "POST", "/api/v1/users/", codes(403, admin=201), api=True, data=NEW_USER
    ),
    Case("api user self", "GET", "/api/v1/users/{self}/", SCOPED, api=True, shows=("self",)),
    Case("api user other", "GET", "/api/v1/users/{member}/", OUT_OF_SCOPE, side="other", api=True),
    Case("api projects", "GET", "/api/v1/projects/", SCOPED, api=True, shows=("project",)),
    Case(
        "api project create",
        "POST",
        "/api/v1/projects/",
        codes(403, admin=201),
        api=True,
        data={"name": "gamma", "quota": {"vms": 1}},
    ),
    Case(
        "api project own",
        "GET",
        "/api/v1/projects/{project}/",
        SCOPED,
        api=True,
        shows=("project",),
    ),
    Case(
        "api project other",
        "GET",
        "/api/v1/projects/{project}/",
        OUT_OF_SCOPE,
        side="other",
        api=True,
    ),
    Case(
        "api project patch own",
        "PATCH",
        "/api/v1/projects/{project}/",
        codes(403, admin=200),
        api=True,
        data={"description": "changed"},
    ),
    Case(
        "api project patch other",
        "PATCH",
        "/api/v1/projects/{project}/",
        codes(404, admin=200),
        side="other",
        api=True,
        data={"description": "changed"},
    ),
    Case(
        "api members own",
        "GET",
        "/api/v1/projects/{project}/members/",
        SCOPED,
        api=True,
        shows=("member",),
    ),
    Case(
        "api members other",
        "GET",
        "/api/v1/projects/{project}/members/",
        OUT_OF_SCOPE,
        side="other",
        api=True,
    ),
    Case(
        "api member add own",
        "POST",
        "/api/v1/projects/{project}/members/",
        codes(403, admin=201, operator=201),
        api=True,
        data={"user": "{newcomer}", "role": "viewer"},
    ),
    Case(
        "api member add other",
        "POST",
        "/api/v1/projects/{project}/members/",
        codes(404, admin=201),
        side="other",
        api=True,
        data={"user": "{newcomer}", "role": "viewer"},
    ),
    Case(
        "api member remove own",
        "DELETE",
        "/api/v1/projects/{project}/members/?user={member}",
        codes(403, admin=204, operator=204),
        api=True,
    ),
    Case(
        "api member remove other",
        "DELETE",
        "/api/v1/projects/{project}/members/?user={member}",
        codes(404, admin=204),
        side="other",
        api=True,
    ),
    Case("api hosts", "GET", "/api/v1/hosts/", SCOPED, api=True, shows=("host",)),
    Case(
        "api host add bad uri",
        "POST",
        "/api/v1/hosts/",
        codes(403, admin=400),
        api=True,
        data={"name": "kvm-new", "uri": "bogus"},
    ),
    Case("api host own", "GET", "/api/v1/hosts/{host}/", SCOPED, api=True, shows=("host",)),
    Case("api host other", "GET", "/api/v1/hosts/{host}/", OUT_OF_SCOPE, side="other", api=True),
    Case("api host delete own", "DELETE", "/api/v1/hosts/{host}/", codes(403, admin=204), api=True),
    Case(
        "api host delete other",
        "DELETE",
        "/api/v1/hosts/{host}/",
        codes(404, admin=204),
        side="other",
        api=True,
    ),
    Case(
        "api host refresh own",
        "POST",
        "/api/v1/hosts/{host}/refresh/",
        codes(403, admin=202),
        api=True,
    ),
    Case(
        "api host refresh other",
        "POST",
        "/api/v1/hosts/{host}/refresh/",
        codes(404, admin=202),
        side="other",
        api=True,
    ),
    Case(
        "api host refresh by GET", "GET", "/api/v1/hosts/{host}/refresh/", GET_ON_ACTION, api=True
    ),
    Case("api vms", "GET", "/api/v1/vms/", SCOPED, api=True, shows=("vm",)),
    Case("api vm own", "GET", "/api/v1/vms/{vm}/", SCOPED, api=True, shows=("vm1",)),
    Case("api vm other", "GET", "/api/v1/vms/{vm}/", OUT_OF_SCOPE, side="other", api=True),
    Case(
        "api vm shutdown own",
        "POST",
        "/api/v1/vms/{vm}/shutdown/",
        codes(202, viewer=403),
        api=True,
    ),
    Case(
        "api vm shutdown colleagues",
        "POST",
        "/api/v1/vms/{vm2}/shutdown/",
        codes(202, member=403, viewer=403),
        api=True,
    ),
    Case(
        "api vm shutdown other",
        "POST",
        "/api/v1/vms/{vm}/shutdown/",
        codes(404, admin=202),
        side="other",
        api=True,
    ),
    Case("api vm shutdown by GET", "GET", "/api/v1/vms/{vm}/shutdown/", GET_ON_ACTION, api=True),
    Case("api vm delete own", "DELETE", "/api/v1/vms/{vm}/", codes(202, viewer=403), api=True),
    Case(
        "api vm delete colleagues",
        "DELETE",
        "/api/v1/vms/{vm2}/",
        codes(202, member=403, viewer=403),
        api=True,
    ),
    Case(
        "api vm delete other",
        "DELETE",
        "/api/v1/vms/{vm}/",
        codes(404, admin=202),
        side="other",
        api=True,
    ),
    Case("api jobs", "GET", "/api/v1/jobs/", SCOPED, api=True, shows=("job",)),
    Case("api job own", "GET", "/api/v1/jobs/{job}/", SCOPED, api=True, shows=("job",)),
    Case("api job other", "GET", "/api/v1/jobs/{job}/", OUT_OF_SCOPE, side="other", api=True),
    Case(
        "api job cancel own",
        "POST",
        "/api/v1/jobs/{job}/cancel/",
        codes(200, viewer=403),
        api=True,
    ),
    Case(
        "api job cancel other",
        "POST",
        "/api/v1/jobs/{job}/cancel/",
        codes(404, admin=200),
        side="other",
        api=True,
    ),
    Case("api job cancel by GET", "GET", "/api/v1/jobs/{job}/cancel/", GET_ON_ACTION, api=True),
    # Operators see their projects' events; everyone sees the events they caused.
    # The own event was caused by the member (alpha) or the outsider (beta).
    Case(
        "api audit events",
        "GET",
        "/api/v1/audit-events/",
        SCOPED,
        api=True,
        shows=("event",),
        shows_not_for=("viewer",),
    ),
    Case(
        "api audit event own",
        "GET",
        "/api/v1/audit-events/{event}/",
        codes(200, viewer=404),
        api=True,
        shows=("event",),
    ),
    Case(
        "api audit event other",
        "GET",
        "/api/v1/audit-events/{event}/",
        OUT_OF_SCOPE,
        side="other",
        api=True,
    ),
    Case(
        "api schema",
        "GET",
        "/api/v1/schema/",
        SCOPED,
        api=True,
        leak_check=False,
    ),
    Case(
        "api docs",
        "GET",
        "/api/v1/docs/",
        SCOPED,
        api=True,
        leak_check=False,
    ),
]


def params():
    for case in CASES:
        for persona in EVERYONE:
            yield pytest.param(case, persona, id=f"{case.name}-{persona}")


def names(world: World, team_name: str, key: str, persona: str) -> list[str]:
    team = world.teams[team_name]
    return {
        "host": [team.host.name],
        "job": [team.job.target],
        "project": [team.project.name],
        "vm": [vm.name for vm in team.vms],
        "vm1": [team.vms[0].name],
        "pool": [team.pool.name],
        "network": [team.network.name],
        "event": [team.event.target],
        "member": [team.removable.username],
        "self": [persona],
    }[key]


def resolve(world: World, case: Case, persona: str) -> tuple[str, dict[str, Any] | None]:
    """The case's path and body with the persona's own (or the other) objects filled in."""
    who = "admin" if persona == ANONYMOUS else persona
    team = world.team_of(who, case.side)
    values = {
        "project": team.project.pk,
        "host": team.host.pk,
        "job": team.job.pk,
        "vm": team.vms[0].pk,
        "vm2": team.vms[-1].pk,
        "event": team.event.pk,
        "member": team.removable.pk,
        "newcomer": world.users["newcomer"].pk,
        "self": world.users[who].pk,
    }
    path = case.path.format(**values)
    data = None
    if case.data is not None:
        data = {
            k: int(v.format(**values)) if isinstance(v, str) and v.startswith("{") else v
            for k, v in case.data.items()
        }
    return path, data


def body_of(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


@pytest.mark.parametrize(("case", "persona"), list(params()))
def test_it_answers_each_persona_with_the_exact_status_and_no_leak(
    case: Case, persona: str, world: World, client_for, api_for
):
    path, data = resolve(world, case, persona)
    client = (api_for if case.api else client_for)(persona)
    if case.with_token and persona != ANONYMOUS:
        user = world.users[persona]
        services.create_token(user, actor=Actor(user))
    if case.api and data is not None:
        response = client.generic(
            case.method, path, json.dumps(data), content_type="application/json"
        )
    elif case.method == "POST":
        response = client.post(path, data or {})
    else:
        response = client.generic(case.method, path)

    if persona == ANONYMOUS:
        if case.api:
            assert response.status_code == 401, (path, response.status_code)
        else:
            assert response.status_code == 302, (path, response.status_code)
            assert response["Location"].startswith("/login/?next="), response["Location"]
        return

    body = body_of(response)
    assert response.status_code == case.expect[persona], (case.method, path, body[:600])
    if response.status_code == 302:
        # An allowed action lands on a page that reports no error.
        landing = client.get(response["Location"])
        assert landing.status_code == 200, (response["Location"], landing.status_code)
        errors = texts(landing, "//div[contains(@class, 'alert-danger')]")
        assert errors == [], errors
        body = body_of(landing)
    if persona == "admin":
        # A list shows both teams' things to the admin; a detail shows its object.
        listing = "{" not in case.path.split("?")[0]
        teams = ("alpha", "beta") if listing else (world.team_of("admin", case.side),)
        if response.status_code == 200 and persona not in case.shows_not_for:
            for team in teams:
                team_name = team if isinstance(team, str) else team.project.name
                for key in case.shows:
                    if key == "member" and team_name == "beta":
                        continue
                    for name in names(world, team_name, key, persona):
                        assert name in body, f"{name!r} missing from {path}"
        return
    home = HOME[persona]
    if case.leak_check:
        leak = LEAKS[home].search(CSRF_TOKEN.sub("<csrf>", body))
        assert leak is None, f"{persona} sees {leak.group(0)!r} in {path}: {body[:2000]}"
    if response.status_code == 200 and persona not in case.shows_not_for:
        for key in case.shows:
            for name in names(world, home, key, persona):
                assert name in body, f"{name!r} missing from {path} for {persona}"


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
