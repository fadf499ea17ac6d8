"""Install-tree URLs cannot make the panel fetch from itself or its private network.

checked_url() reads the URL only: the tests of it resolve no name and open no socket.
target() and the fetches resolve the name, check every address and connect to the
address checked; their tests use this machine's own name (which resolves to one of its
own addresses) and names a test resolves itself, with servers on 127.0.0.x only.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import socket
import threading

import pytest

from panel import services as panel_services
from panel.actors import Actor
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
    "http://100.64.0.1/os/",
    "http://[64:ff9b::7f00:1]/os/",
    "http://[2002:7f00:1::1]/os/",
    "http://[::127.0.0.1]/os/",  # the old IPv4-compatible form
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/os/",
    "http://224.0.0.251/os/",
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
        actor=Actor(admin_user),
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


# --- names: resolved, every address checked, the checked one connected to --------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with a small body, and remembers the Host header of each."""

    seen: list[str]

    def do_GET(self):
        self.seen.append(self.headers.get("Host", ""))
        body = b"kernel bytes"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.seen.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(handler, address: str, port: int = 0):
    server = http.server.ThreadingHTTPServer((address, port), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def servers():
    """serve(address, port=0, handler=None) -> (server, requests seen); all shut at the end."""
    started = []

    def serve(address: str, port: int = 0, handler=None):
        seen: list[str] = []
        cls = type("Handler", (handler or _Recorder,), {"seen": seen})
        server = _serve(cls, address, port)
        started.append(server)
        return server, seen

    yield serve
    for server in started:
        server.shutdown()
        server.server_close()


def own_name() -> tuple[str, str]:
    """This machine's host name, which resolves to one of its own addresses, and that
    address: a name that is not `localhost` yet points at the panel itself."""
    name = socket.gethostname()
    address = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    assert not ipaddress.ip_address(address).is_global, (
        f"{name} resolves to {address}, a public address: this machine's name should not"
    )
    return name, address


@pytest.fixture
def fake_dns(monkeypatch):
    """names[name] = [addresses, ...]: the answers a name gives, one per lookup (the last
    repeats); other names resolve as usual. lookups lists the names looked up."""
    real = socket.getaddrinfo
    names: dict[str, list[str]] = {}
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            lookups.append(host)
            answers = names[host]
            address = answers.pop(0) if len(answers) > 1 else answers[0]
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names, lookups


def test_it_refuses_a_name_that_resolves_to_this_machine_and_fetches_nothing(settings, servers):
    settings.PANEL_INSTALL_MIRRORS = []
    name, address = own_name()
    server, seen = servers(address)
    url = f"http://{name}:{server.server_address[1]}/os/"

    assert tree.checked_url(url) == url  # the name alone looks harmless
    with pytest.raises(ServiceError, match=f"resolves to {address}, a loopback, private") as exc:
        tree.target(url)
    assert exc.value.field == "location"
    with pytest.raises(ServiceError, match="resolves to"):
        tree.find_boot_files(url)
    with pytest.raises(ServiceError, match="resolves to"):
        tree.fetch(url + "images/pxeboot/vmlinuz", max_bytes=1000)
    assert seen == []


def test_it_refuses_a_name_with_one_internal_address_among_public_ones(
    settings, fake_dns, monkeypatch
):
    settings.PANEL_INSTALL_MIRRORS = []
    names, _ = fake_dns
    # getaddrinfo gives several answers for a name with several addresses: any inside is enough.
    real = socket.getaddrinfo

    def both(host, port, *args, **kwargs):
        if host == "mixed.test":
            return real("8.8.8.8", port, *args, **kwargs) + real("10.0.0.7", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", both)
    with pytest.raises(ServiceError, match="resolves to 10.0.0.7"):
        tree.target("http://mixed.test/os/")


def test_it_connects_to_the_address_it_checked_when_the_name_changes_its_answer(
    settings, servers, fake_dns, monkeypatch
):
    """DNS rebinding: the name resolves to an allowed address for the check and to an
    internal one right after; the request still goes to the address that was checked."""
    settings.PANEL_INSTALL_MIRRORS = []
    inside, inside_seen = servers("127.0.0.3")
    port = inside.server_address[1]
    allowed, allowed_seen = servers("127.0.0.2", port)
    # For this test 127.0.0.2 stands for a public mirror.
    real_check = tree.internal_address
    monkeypatch.setattr(tree, "internal_address", lambda a: str(a) != "127.0.0.2" and real_check(a))
    names, lookups = fake_dns
    names["rebind.test"] = ["127.0.0.2", "127.0.0.3"]

    data = tree.fetch(f"http://rebind.test:{port}/vmlinuz", max_bytes=1000)

    assert data == b"kernel bytes"
    assert lookups == ["rebind.test"]
    assert allowed_seen == [f"rebind.test:{port}"]
    assert inside_seen == []


def test_it_refuses_a_redirect_to_a_name_that_resolves_inside(
    settings, servers, fake_dns, monkeypatch
):
    settings.PANEL_INSTALL_MIRRORS = []
    name, address = own_name()
    inside, inside_seen = servers(address)
    target = f"http://{name}:{inside.server_address[1]}/secret"

    class Redirect(_Recorder):
        def do_GET(self):
            self.seen.append(self.headers.get("Host", ""))
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

        do_HEAD = do_GET

    public, public_seen = servers("127.0.0.2", handler=Redirect)
    real_check = tree.internal_address
    monkeypatch.setattr(tree, "internal_address", lambda a: str(a) != "127.0.0.2" and real_check(a))
    fake_dns[0]["mirror.test"] = ["127.0.0.2"]
    url = f"http://mirror.test:{public.server_address[1]}/os/"

    with pytest.raises(
        ServiceError, match=f"redirects to {target}, which the panel may not"
    ) as exc:
        tree.fetch(url + "vmlinuz", max_bytes=1000)
    assert f"resolves to {address}" in exc.value.message
    with pytest.raises(ServiceError, match="redirects to"):
        tree.find_boot_files(url)
    assert public_seen and inside_seen == []


def test_it_says_when_a_name_does_not_resolve(settings):
    settings.PANEL_INSTALL_MIRRORS = []
    with pytest.raises(ServiceError, match='cannot resolve "no-such-host.invalid"') as exc:
        tree.target("http://no-such-host.invalid/os/")
    assert exc.value.field == "location"
