"""Who may see and do what on every API endpoint, for every persona, on an object of
their own project and on one of the other project (the pages' table is in
test_permission_matrix_pages.py; the machinery in matrix.py).

The table below is the contract of panel/permissions.py as an API client meets it:
anonymous → 401; out of scope → 404; in scope but not allowed → 403; allowed →
what the view answers; GET on an action → 405. Every answer given to someone of one
team is also searched for the names of the other team's things (projects, hosts,
VMs, jobs, audit targets, people): none may appear, whatever the status.
"""

from __future__ import annotations

import pytest

from .conftest import World
from .matrix import (
    GET_ON_ACTION,
    NEW_USER,
    OUT_OF_SCOPE,
    SCOPED,
    Case,
    check_answer,
    codes,
    params,
)

CASES = [
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


@pytest.mark.parametrize(("case", "persona"), list(params(CASES)))
def test_it_answers_each_persona_with_the_exact_status_and_no_leak(
    case: Case, persona: str, world: World, client_for, api_for
):
    check_answer(case, persona, world, client_for, api_for)
