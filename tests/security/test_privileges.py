"""The privilege matrix: for each privilege of the catalogue, someone who holds a custom
role of that privilege alone (with view) in alpha gets past the permission check of every
request that needs it (as alpha's operator does), and is refused every request that
needs another one (as alpha's viewer is; consoles: 403). The table of what each request
needs is tests/security/privileges.py, complete over the security matrix."""

from __future__ import annotations

from typing import Any

import pytest

from panel import services
from panel.actors import Actor
from panel.models import Grant, Role
from panel.privileges import CONSOLE, PROJECT_PRIVILEGES, VIEW

from .privileges import NEEDS, PERSONAL
from .test_matrix import MATRIX, PERSONAS, requests_in_order

OPERATOR, VIEWER = PERSONAS.index("operator"), PERSONAS.index("viewer")
REFUSED = {401, 403, 404, 405}
SINGLE = sorted(PROJECT_PRIVILEGES - {VIEW})
# The rows that need two privileges, each checked with a role of both.
PAIRS = sorted({tuple(sorted(needs)) for needs in NEEDS.values() if len(needs) > 1})


def expected(key: str, holds: set[str]) -> int:
    """The status someone holding holds (in alpha, on everything) gets for the row."""
    needs = set(NEEDS[key])
    statuses = MATRIX[key].split()
    if needs == PERSONAL:
        return int(statuses[OPERATOR])  # someone else's, as for the operator
    if needs and needs <= holds:
        return int(statuses[OPERATOR])
    if CONSOLE in needs:
        return 403
    return int(statuses[VIEWER])


@pytest.fixture
def holder_of(world, new_client):  # noqa: F811 - the fixture of tests/teams
    """holder_of(privileges): a page client and an API client maker of a new user granted a
    custom role of exactly those privileges (and view) in alpha."""

    def make(privileges: set[str]) -> tuple[Any, Any]:
        user = services.create_user(
            username="holder", password="Holder-pass-5521k", actor=Actor(world.users["admin"])
        )
        role = Role.objects.create(name="only", privileges=sorted(privileges | {VIEW}))
        Grant.objects.create(project=world.teams["alpha"].project, user=user, role=role)
        page = new_client()
        page.force_login(user)

        def api() -> Any:
            # A fresh token each time: the sweep's token pages replace and revoke it.
            token = services.create_token(user, actor=Actor(user)).key
            return new_client(headers={"Authorization": f"Token {token}"})

        return page, api

    return make


def sweep(everything: dict[str, Any], page: Any, api: Any, holds: set[str]) -> list[str]:
    wrong = []
    for key, method, path in requests_in_order(everything):
        if path.startswith("/api/"):
            status = api().generic(method, path, b"{}", "application/json").status_code
        else:
            status = page.generic(method, path, b"", "application/x-www-form-urlencoded")
            status = status.status_code
        want = expected(key, holds)
        # Past the check, the answer depends on what the rows before did (a job they
        # started makes the VM busy: 409): any answer but a refusal will do.
        if status != want and (want in REFUSED or status in REFUSED):
            wrong.append(f"{key} ({method} {path}): {status}, not {want}")
    return wrong


def test_it_knows_what_every_request_of_the_matrix_needs():
    assert sorted(set(MATRIX) - set(NEEDS)) == []  # a new request needs its privileges
    assert sorted(set(NEEDS) - set(MATRIX)) == []
    needed = set().union(*NEEDS.values())
    # Every privilege guards a request (console_input: a websocket, test_vm_grants.py).
    assert PROJECT_PRIVILEGES - {VIEW} - needed <= {"use_network", "console_input"}


@pytest.mark.parametrize("privilege", SINGLE)
def test_a_role_of_one_privilege_passes_its_requests_and_no_other(privilege, everything, holder_of):
    page, api = holder_of({privilege})

    assert sweep(everything, page, api, {VIEW, privilege}) == []


@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
def test_a_request_that_needs_two_privileges_passes_with_both(pair, everything, holder_of):
    page, api = holder_of(set(pair))

    assert sweep(everything, page, api, {VIEW, *pair}) == []
