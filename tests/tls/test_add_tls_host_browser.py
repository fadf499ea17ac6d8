"""In Chromium against the running stack: an admin adds a host over qemu+tls by choosing
the three certificate files on the add-host page, and its page says how the panel
reaches it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from panel import services
from panel.actors import Actor
from panel.models import Host
from tests.browser import signed_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.stack,
    pytest.mark.libvirt,
    pytest.mark.timeout(180),
]


@pytest.fixture
def pki_dir(settings):
    """The stack's processes keep certificates in the default PANEL_PKI_DIR: so does this
    test (the host is removed, with its certificates, at the end)."""
    return settings.PANEL_PKI_DIR


def test_an_admin_adds_a_tls_host_with_the_files_chosen_on_the_page(
    page, stack, transactional_db, admin_user, tls_host_uri, test_pki, tmp_path
):
    paths = {}
    for name, data in test_pki.files().items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(data)
    signed_in(page, stack, admin_user)

    page.goto(stack.url + "/hosts/add/")
    page.get_by_label("Name").fill("tls-browser")
    page.get_by_label("libvirt URI").fill(tls_host_uri)
    page.get_by_label("CA certificate (qemu+tls)").set_input_files(paths["ca_certificate"])
    page.get_by_label("Client certificate (qemu+tls)").set_input_files(paths["client_certificate"])
    page.get_by_label("Client key (qemu+tls)").set_input_files(paths["client_key"])
    page.get_by_role("button", name="Connect and add").click()

    host = None
    try:
        expect(page).to_have_url(re.compile(r"/hosts/\d+/$"))
        host = Host.objects.get(name="tls-browser")
        card = page.locator(".host-certificates")
        expect(card).to_contain_text("over TLS (qemu+tls)")
        expect(card.locator("[data-server-certificate]")).to_contain_text("CN=panel-tls-host")
        expect(card.locator("[data-client-certificate]")).to_contain_text("CN=panel-client")
    finally:
        host = host or Host.objects.filter(name="tls-browser").first()
        if host is not None:
            services.delete_host(host, actor=Actor(admin_user))
