"""The permission matrix's machinery, shared by test_permission_matrix_pages.py and
test_permission_matrix_api.py: a Case is one request with the exact status each persona
gets, and check_answer() sends it as a persona and checks what comes back.

The tables are the contract of panel/permissions.py as a user meets it:
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

from panel import services
from panel.actors import Actor

from .conftest import HOME, PERSONAS, World, texts

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


def params(cases: list[Case]):
    for case in cases:
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


def check_answer(case: Case, persona: str, world: World, client_for, api_for) -> None:
    """Send the case's request as the persona; check the status, that an allowed action
    lands on a page without an error, what a 200 shows, and that nothing leaks."""
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
