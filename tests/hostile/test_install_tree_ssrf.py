"""Install-tree URLs cannot make the panel fetch from itself or its private network.

The checks read the URL only: no test here resolves a name or opens a socket,
except the redirect tests, whose servers listen on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from panel import services as panel_services
from panel.exceptions import ServiceError
from panel.models import Job
from tests.panel.conftest import FAKE_URI, make_host
from vms.install import tree
from vms.models import VirtualMachine

INTERNAL = [
    "http://127.0.0.1/os/",
    "http://127.8.9.10:8080/os/",
    "http://localhost/os/",
    "http://LOCALHOST./os/",
    "http://mirror.localhost/os/",
    "http://10.0.0.5/os/",
    "http://172.16.3.4/os/",
    "http://192.168.1.1/os/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/os/",
    "http://[::1]/os/",
    "http://[::]/os/",
    "http://[fe80::1%25eth0]/os/",
    "http://[fd00::5]/os/",
    "http://[::ffff:127.0.0.1]/os/",
    "http://[::ffff:169.254.169.254]/os/",
    "http://2130706433/os/",
    "http://0x7f000001/os/",
    "http://127.1/os/",
    "http://017700000001/os/",
    "https://user:pw@10.1.2.3/os/",
]
NOT_HTTP = [
    "file:///etc/passwd",
    "ftp://mirror.example.org/os/",
    "gopher://mirror.example.org/",
    "jar:http://mirror.example.org/x!/",
    "//mirror.example.org/os/",
    "http:///os/",
    "http://mirror.example.org:99999/os/",
    "http://[::1/os/",
    "",
]


@pytest.fixture
def no_dns(monkeypatch):
    """Fail the test if anything resolves a name or connects."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network call during validation: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("url", INTERNAL)
def test_it_refuses_internal_addresses_without_a_lookup(url, settings, no_dns):
    settings.PANEL_INSTALL_MIRRORS = []
    with pytest.raises(ServiceError, match="loopback, private or link-local") as exc:
        tree.checked_url(url)
    assert exc.value.field == "location"


@pytest.mark.parametrize("url", NOT_HTTP)
def test_it_refuses_what_is_not_an_http_url(url, settings, no_dns):
    settings.PANEL_INSTALL_MIRRORS = []
    with pytest.raises(ServiceError, match="is not an http or https URL") as exc:
        tree.checked_url(url)
    assert exc.value.field == "location"


@pytest.mark.parametrize(
    "url",
    [
        "https://deb.debian.org/debian/dists/bookworm/",
        "http://8.8.8.8/os/",
        "http://[2001:4860:4860::8888]/os/",
        "http://mirror.example.org/os/",
    ],
)
def test_it_accepts_public_addresses_without_a_lookup(url, settings, no_dns):
    settings.PANEL_INSTALL_MIRRORS = []
    assert tree.checked_url(url) == url


MIRRORS = ["https://mirror.example.org/fedora/", "http://10.0.0.9:8080/trees"]


@pytest.mark.parametrize(
    "url",
    [
        "https://mirror.example.org/fedora/releases/40/os/",
        "https://MIRROR.example.org/fedora/",
        "http://10.0.0.9:8080/trees/debian/",
        "http://10.0.0.9:8080/trees",
    ],
)
def test_listed_mirrors_are_the_only_trees_allowed(url, settings, no_dns):
    settings.PANEL_INSTALL_MIRRORS = MIRRORS
    assert tree.checked_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://mirror.example.org/debian/",
        "https://mirror.example.org/fedora-evil/",
        "https://mirror.example.org.evil.example/fedora/",
        "http://mirror.example.org/fedora/",
        "https://mirror.example.org:8443/fedora/",
        "https://mirror.example.org/fedora/../debian/",
        "https://mirror.example.org/fedora/%2e%2e/debian/",
        "https://evil@mirror.example.org/fedora/",
        "http://10.0.0.9:8081/trees/",
        "http://10.0.0.9:8080/treesx/",
        "http://deb.debian.org/debian/",
    ],
)
def test_urls_outside_the_mirrors_are_refused_listing_the_mirrors(url, settings, no_dns):
    settings.PANEL_INSTALL_MIRRORS = MIRRORS
    with pytest.raises(ServiceError, match="not on an allowed mirror") as exc:
        tree.checked_url(url)
    assert exc.value.field == "location"
    for mirror in MIRRORS:
        assert mirror in exc.value.message


class _Redirect(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_HEAD(self):
        self.send_response(302)
        self.send_header("Location", self.target)
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


@pytest.fixture
def redirector(settings):
    """A 127.0.0.1 server, allowed as the mirror, that redirects every request elsewhere."""
    handler = type("Handler", (_Redirect,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    settings.PANEL_INSTALL_MIRRORS = [base + "/allowed/"]
    yield handler, base
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("where", ["/elsewhere/vmlinuz", "http://169.254.169.254/latest/"])
def test_a_redirect_out_of_the_mirrors_is_not_followed(redirector, where):
    handler, base = redirector
    handler.target = where if where.startswith("http") else base + where
    with pytest.raises(ServiceError, match="redirects to .* may not fetch from") as exc:
        tree.fetch(f"{base}/allowed/vmlinuz", max_bytes=1000)
    assert exc.value.field == "location"
    with pytest.raises(ServiceError, match="redirects to"):
        tree.find_boot_files(f"{base}/allowed/")


@pytest.mark.django_db
def test_the_api_refuses_an_internal_tree_with_400_naming_the_field(
    admin_client, admin_user, settings, no_dns
):
    settings.PANEL_INSTALL_MIRRORS = []
    project = panel_services.create_project(
        name="alpha",
        quota={"vms": 3, "vcpus": 4, "memory_mib": 1024, "disk_gib": 4},
        actor=admin_user,
    )
    host = make_host("fake", uri=FAKE_URI)
    body = {
        "name": "ssrf",
        "project": project.pk,
        "host": host.pk,
        "vcpus": 1,
        "memory_mib": 64,
        "install": {"method": "url", "location": "http://169.254.169.254/latest/"},
    }
    response = admin_client.post("/api/v1/vms/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert "location" in response.json()
    assert "link-local" in json.dumps(response.json())
    assert not VirtualMachine.objects.exists()
    assert not Job.objects.exists()
