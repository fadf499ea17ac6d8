"""GET changes nothing, and no state change is possible without the CSRF token.

Both sweeps walk every URL the resolver knows (tests/security/routes.py): a GET to an
action answers 405, a GET anywhere leaves audit rows, jobs, VM rows and the host's
domains as they were; a session POST/PUT/PATCH/DELETE without the CSRF token is refused
with 403 and changes nothing, and the same request with the page's token gets through.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client
from lxml import html as lxml_html

from panel import hypervisor, services
from panel.actors import Actor

from .conftest import objects_of, state_of_everything
from .routes import fill, http_routes

# The URLs that answer GET (pages, API reads, forms); everything else is an action that
# must answer GET with 405. A new GET endpoint must be added here to be allowed.
READABLE = {
    "dashboard",
    "role_list",
    "role_edit",
    "group_list",
    "api_roles",
    "api_role",
    "api_groups",
    "api_group",
    "api_grants",
    "api_grant",
    "favicon",
    "login",
    "oidc_login",
    "oidc_callback",
    "account",
    "two_factor",
    "totp_confirm",
    "login_second",
    "reauth",
    "session_list",
    "session-list",
    "user_sessions",
    "host_list",
    "host_add",
    "host_detail",
    "host_tree",
    "host_drain",
    "host_drain_plan",
    "affinity_groups",
    "affinitygroup-list",
    "affinitygroup-detail",
    "job_list",
    "job_panel",
    "job_detail",
    "project_list",
    "project_add",
    "project_detail",
    "project_edit",
    "user_list",
    "directory_mapping_list",
    "directorymapping-list",
    "directorymapping-detail",
    "user_reset_password",
    "audit_list",
    "audit_export",
    "vm_tuning_page",
    "vm_list",
    "vm_create",
    "vm_create_from_template",
    "template_list",
    "vm_detail",
    "vm_delete",
    "vm_xml",
    "vm_console",
    "vm_migrate",
    "pool_list",
    "pool_add",
    "pool_detail",
    "pool_upload",
    "volume_detail",
    "library_list",
    "library_detail",
    "network_list",
    "network_add",
    "network_detail",
    "host_interfaces",
    "api_schema",
    "api_docs",
    "vm_nics",
    "vm_nic",
    "vm_snapshots",
    "vm_snapshot",
    "vm_backups",
    "vm_backup",
    "vm_backup_schedules",
    "project_backup_schedules",
    "backup_schedule",
    "vm_stats",
    "host_stats",
    "fleet_stats",
    "vm_tuning",
    "user-list",
    "user-detail",
    "project-list",
    "project-detail",
    "project-members",
    "host-list",
    "host-detail",
    "host-ssh-key",
    "vm-list",
    "vm-detail",
    "vm-disks",
    "pool-list",
    "pool-detail",
    "volume-list",
    "libraryimage-list",
    "libraryimage-detail",
    "volume-detail",
    "volume-download",
    "job-list",
    "job-detail",
    "network-list",
    "network-detail",
    "network-leases",
    "auditevent-list",
    "auditevent-detail",
    "api-root",
    "metrics",
    "notification_list",
    "subscription_list",
    "subscription-list",
    "subscription-detail",
    "subscription-deliveries",
    "notification-list",
    "notification-detail",
    "token_list",
    "user_tokens",
    "apitoken-list",
    "apitoken-detail",
}
# GET on these is not an action, yet not a read either: logging out needs POST (405
# when logged in), and the token endpoint takes credentials by POST only.
NOT_GET = {"logout", "api_token"}


def libvirt_state(uri: str) -> list[tuple[str, str, str]]:
    return sorted((d.uuid, d.name, str(d.state)) for d in hypervisor.list_domains(uri))


def test_it_changes_nothing_on_any_get_and_refuses_get_on_actions(
    world, everything, client_for, new_client
):
    """As the admin, who reaches everything (test_matrix.py walks it as each persona)."""
    client = client_for("admin")
    # Someone else's secrets, which no answer to this persona may contain.
    member = world.users["member"]
    other_token = services.create_token(member, actor=Actor(member)).key
    other_session = new_client()
    other_session.force_login(member)
    secrets = {
        "another user's API token": other_token,
        "another user's session id": other_session.cookies["sessionid"].value,
        "SECRET_KEY": settings.SECRET_KEY,
    }
    leaked = set()
    beta_uri = world.teams["beta"].host.uri  # test:///default, a real (fake) hypervisor
    before, domains_before = state_of_everything(), libvirt_state(beta_uri)
    wrong = []
    gets = 0
    for team in ("alpha", "beta"):
        for route in http_routes():
            for path in fill(route, objects_of(everything, team)):
                response = client.get(path)
                gets += 1
                status = response.status_code
                body = (
                    b"".join(response.streaming_content) if response.streaming else response.content
                ).decode(errors="replace")
                leaked |= {f"{what} in {path}" for what, v in secrets.items() if v in body}
                if route.name in READABLE:
                    # 503: alpha's host is unreachable, and the reads that ask it say so.
                    if status in (500, 502, 504) or status == 405:
                        wrong.append(f"GET {path}: {status}")
                elif status != 405:
                    wrong.append(f"GET {path} (an action): {status}, not 405")

    assert wrong == [], "\n".join(wrong)
    assert leaked == set()
    assert state_of_everything() == before
    assert libvirt_state(beta_uri) == domains_before
    assert gets > 300


def test_it_names_only_urls_that_exist_as_readable():
    names = {route.name for route in http_routes()}

    assert READABLE | NOT_GET <= names


# --- CSRF ----------------------------------------------------------------------------

CSRF_FAILURE = re.compile(r"CSRF", re.I)
# Endpoints that never act on the session's behalf, so CSRF cannot apply: /metrics only
# reads (GET); the token endpoint authenticates by the username and password in the body.
NO_SESSION = {"metrics", "api_token"}


@pytest.fixture
def csrf_client(world, client_handler) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["admin"])
    return client


def test_it_refuses_every_state_change_without_the_csrf_token(world, everything, csrf_client):
    before = state_of_everything()
    # Logging in is a POST too: Django's login form is CSRF-protected as well.
    accepted = []
    posts = 0
    for route in http_routes():
        if route.name in NO_SESSION:
            continue
        for path in fill(route, objects_of(everything, "alpha")):
            methods = ("POST", "PUT", "PATCH", "DELETE") if route.api else ("POST",)
            for method in methods:
                response = csrf_client.generic(method, path, b"{}", "application/json")
                posts += 1
                if response.status_code != 403 or not CSRF_FAILURE.search(
                    response.content.decode(errors="replace")
                ):
                    accepted.append(f"{method} {path}: {response.status_code}")

    assert accepted == [], "\n".join(accepted)
    assert state_of_everything() == before
    assert posts > 350


def token_of(client: Client, page: str) -> str:
    doc = lxml_html.fromstring(client.get(page).content.decode())
    return doc.xpath("//input[@name='csrfmiddlewaretoken']/@value")[0]


def test_it_accepts_a_form_with_the_token_from_the_page(world, everything, csrf_client):
    alpha = everything["alpha"]
    token = token_of(csrf_client, f"/vms/{alpha['vm']}/")

    response = csrf_client.post(
        f"/projects/{alpha['project']}/edit/",
        {"name": "alpha", "description": "edited with the token", "csrfmiddlewaretoken": token},
    )

    assert response.status_code == 302, response.content.decode()[:500]
    assert world.teams["alpha"].project.__class__.objects.get(pk=alpha["project"]).description == (
        "edited with the token"
    )


def test_it_accepts_an_api_call_with_the_session_and_the_csrf_header(
    world, everything, csrf_client
):
    alpha = everything["alpha"]
    token = token_of(csrf_client, "/")

    without = csrf_client.patch(
        f"/api/v1/projects/{alpha['project']}/",
        {"description": "by the API"},
        content_type="application/json",
    )
    with_token = csrf_client.patch(
        f"/api/v1/projects/{alpha['project']}/",
        {"description": "by the API"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert without.status_code == 403
    assert "CSRF" in without.json()["detail"]
    assert with_token.status_code == 200, with_token.content


@pytest.mark.parametrize("persona", ["admin", "operator", "member", "viewer"])
def test_it_puts_the_csrf_token_in_every_post_form_of_every_page(
    persona, world, everything, client_for
):
    client = client_for(persona)
    missing = []
    forms = 0
    for route in http_routes():
        if route.name not in READABLE or route.api or route.name == "metrics":
            continue
        for path in fill(route, objects_of(everything, "alpha")):
            response = client.get(path)
            if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
                continue
            doc = lxml_html.fromstring(response.content.decode())
            for form in doc.xpath("//form[translate(@method, 'POST', 'post')='post']"):
                forms += 1
                if not form.xpath(".//input[@name='csrfmiddlewaretoken']"):
                    missing.append(f"{path}: form action={form.get('action')}")

    assert missing == []
    assert forms > 20
