"""Who may see and do what on every page, for every persona, on an object of their
own project and on one of the other project (the API's table is in
test_permission_matrix_api.py; the machinery in matrix.py).

The table below is the contract of panel/permissions.py as a user meets it:
anonymous → the login page; out of scope → 404; in scope but not allowed → 403;
allowed → what the view answers (an action's redirect lands on a page without an
error); GET on an action → 405. Every answer given to someone of one team is also
searched for the names of the other team's things (projects, hosts, VMs, pools,
networks, jobs, audit targets, people): none may appear, whatever the status.
"""

from __future__ import annotations

import pytest

from .conftest import World
from .matrix import (
    ADMIN_ONLY_PAGE,
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
    Case("token list", "GET", "/account/tokens/", SCOPED),
    Case("token create", "POST", "/account/tokens/add/", codes(302), data={"scope": "all"}),
    Case("token create by GET", "GET", "/account/tokens/add/", GET_ON_ACTION),
    Case("user tokens", "GET", "/users/{member}/tokens/", ADMIN_ONLY_PAGE),
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
]


@pytest.mark.parametrize(("case", "persona"), list(params(CASES)))
def test_it_answers_each_persona_with_the_exact_status_and_no_leak(
    case: Case, persona: str, world: World, client_for, api_for
):
    check_answer(case, persona, world, client_for, api_for)
