"""What the site answers outside any feature: the icon, for browsers that ask for
/favicon.ico by name and for pages that name it."""

from __future__ import annotations

import pytest
from lxml import html


@pytest.mark.django_db
def test_favicon_ico_leads_anyone_to_the_panels_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)


@pytest.mark.django_db
def test_every_page_names_the_icon(client):
    login = client.get("/login/")
    (href,) = html.fromstring(login.content).xpath("//link[@rel='icon']/@href")
    assert href == client.get("/favicon.ico")["Location"]
