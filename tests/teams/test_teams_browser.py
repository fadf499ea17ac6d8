"""In headless Chromium against the running stack: an admin sets up a new team
from the pages, and its new member sees that team and nothing of the others."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from panel.models import AuditEvent, Membership

from .conftest import PASSWORDS

GINA_PASSWORD = "gina-pass-83Kd"


def log_in(page, stack, username: str, password: str) -> None:  # noqa: F811
    page.goto(stack.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(stack.url + "/")
    expect(page.locator("nav.navbar")).to_contain_text(username)


@pytest.mark.browser
@pytest.mark.stack
@pytest.mark.timeout(180)
def test_it_lets_an_admin_build_a_team_whose_member_sees_only_it(
    stack,
    transactional_db,
    world,
    page,  # noqa: F811
):
    log_in(page, stack, "admin", PASSWORDS["admin"])

    page.goto(stack.url + "/projects/add/")
    page.get_by_label("Name", exact=True).fill("gamma")
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(r"/projects/\d+/$"))
    expect(page.get_by_role("heading", name="Project gamma")).to_be_visible()
    gamma_url = page.url

    page.goto(stack.url + "/users/")
    page.get_by_label("Username").fill("gina")
    page.get_by_label("Password").fill(GINA_PASSWORD)
    page.get_by_role("button", name="Create user").click()
    expect(page.locator(".alert-success")).to_contain_text("User gina created.")
    expect(page.locator("tr[data-user='gina']")).to_be_visible()

    page.goto(gamma_url)
    page.get_by_label("Username").fill("gina")
    page.get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator(".alert-success")).to_contain_text("gina is now member.")
    expect(page.locator("table.members")).to_contain_text("gina")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/"))
    expect(page.locator("nav.navbar")).to_have_count(0)

    log_in(page, stack, "gina", GINA_PASSWORD)
    page.goto(stack.url + "/projects/")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    names = page.locator("table tbody tr td:first-child").all_inner_texts()
    assert [n.strip() for n in names] == ["gamma"]
    body = page.locator("main").inner_text()
    assert "alpha" not in body and "beta" not in body, body

    page.goto(stack.url + "/vms/")
    expect(page.locator("main table tbody")).to_have_text(
        re.compile(r"^\s*No virtual machines you can see\.\s*$")
    )
    for vm in ("alpha-web", "alpha-db", "beta-app"):
        expect(page.locator("main")).not_to_contain_text(vm)

    page.goto(stack.url + f"/projects/{world.teams['alpha'].project.pk}/")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()

    assert Membership.objects.get(user__username="gina").project.name == "gamma"
    assert set(
        AuditEvent.objects.filter(username="admin", action__in=["project.create", "user.create"])
        .filter(target__in=["gamma", "gina"])
        .values_list("action", "target")
    ) == {("project.create", "gamma"), ("user.create", "gina")}
