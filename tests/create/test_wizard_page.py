"""The wizard's page as a user sees it before filling it in: the install method it starts
with, the volumes it offers as an installer ISO, the OS variants and how it answers a choice
it does not offer."""

from __future__ import annotations

import pytest
from lxml import html as lxml_html

pytestmark = [pytest.mark.libvirt]


def page(response):
    assert response.status_code == 200, response.content[:500]
    return lxml_html.fromstring(response.content.decode())


def test_the_wizard_starts_with_an_iso_install(admin_client, project):
    doc = page(admin_client.get("/vms/new/"))
    checked = doc.xpath("//input[@name='method'][@checked]")
    assert [radio.get("value") for radio in checked] == ["iso"]
    assert doc.xpath("//input[@name='method']")[0].get("value") == "iso"  # and first
