"""In headless Chromium against the running stack: an admin creates an isolated network
from the form and sees it active."""

from __future__ import annotations

import pytest
from django.test import Client
from playwright.sync_api import expect

from tests.networking.conftest import virsh

pytestmark = [
    pytest.mark.browser,
    pytest.mark.stack,
    pytest.mark.libvirt,
    pytest.mark.timeout(180),
]


def test_it_creates_an_isolated_network_from_the_form_and_shows_it_active(
    stack, transactional_db, local_host, people, nets, page
):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    client = Client()
    client.force_login(people["admin"])
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": stack.url}]
    )
    x = nets.octet()
    name, bridge = nets.name(), nets.bridge()

    page.goto(stack.url + "/networks/")
    page.get_by_role("link", name="Create network").click()
    expect(page.locator("#mode-help")).to_contain_text("no way out")
    page.get_by_label("Host", exact=True).select_option(label="local")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Mode", exact=True).select_option("isolated")
    page.get_by_label("Bridge", exact=True).fill(bridge)
    page.get_by_label("IPv4 address", exact=True).fill(f"10.213.{x}.1/24")
    page.get_by_label("IPv4 DHCP range start").fill(f"10.213.{x}.100")
    page.get_by_label("IPv4 DHCP range end").fill(f"10.213.{x}.200")
    page.get_by_label("Static DHCP hosts").fill(f"52:54:00:12:34:56 10.213.{x}.20 web1")
    page.get_by_role("button", name="Create network").click()

    expect(page.locator(".alert-success")).to_contain_text(f"Network {name} created on local.")
    expect(page.locator("h1 [data-network-state]")).to_have_text("active")
    expect(page.locator("#network-settings")).to_contain_text(
        f"10.213.{x}.1/24, DHCP 10.213.{x}.100–10.213.{x}.200"
    )
    expect(page.locator("#dhcp-hosts")).to_contain_text("web1")
    assert "Active:         yes" in virsh("net-info", name)

    page.get_by_role("link", name="Networks").click()
    expect(page.locator(f"tr[data-network='{name}'] [data-network-state]")).to_have_text("active")

    # A refused form keeps what was typed and says what is wrong, on the field.
    page.goto(stack.url + "/networks/add/")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("IPv4 address", exact=True).fill(f"10.213.{x}.1/24")
    page.get_by_role("button", name="Create network").click()
    expect(page.locator(".invalid-feedback")).to_contain_text("already has a network named")
    expect(page.get_by_label("Name", exact=True)).to_have_value(name)
    assert errors == []
