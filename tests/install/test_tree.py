"""Install trees: finding the installer's kernel and initrd over http, and bounded downloads.

Every request goes to an http.server on 127.0.0.1 started by the test, allowed
through PANEL_INSTALL_MIRRORS as a local mirror would be.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from panel.exceptions import ServiceError
from vms.install import tree

KERNEL = b"\x4d\x5a kernel " * 1000
INITRD = b"\x1f\x8b initrd " * 3000


class _NoHeadHandler(http.server.SimpleHTTPRequestHandler):
    """A server that refuses HEAD, as some mirrors do."""

    def do_HEAD(self):
        self.send_error(405)

    def log_message(self, *args):
        pass


class _FtpRedirectHandler(http.server.SimpleHTTPRequestHandler):
    """A server that sends every request on to an ftp URL."""

    def do_HEAD(self):
        self.send_response(302)
        self.send_header("Location", "ftp://127.0.0.1/pub/vmlinuz")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Keep requests on 127.0.0.1 whatever proxy the environment names."""
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def mirrors(settings):
    """The allowed mirrors: each server a test starts adds itself."""
    settings.PANEL_INSTALL_MIRRORS = []
    return settings.PANEL_INSTALL_MIRRORS


def _serve(root: Path, handler=_QuietHandler):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    django_settings.PANEL_INSTALL_MIRRORS.append(base + "/")
    return server, base


@pytest.fixture
def site(tmp_path):
    """A web server on 127.0.0.1 serving tmp_path; yields (root dir, base URL)."""
    server, base = _serve(tmp_path)
    yield tmp_path, base
    server.shutdown()
    server.server_close()


def _lay_out(root: Path, kernel: str, initrd: str) -> None:
    for path, data in ((kernel, KERNEL), (initrd, INITRD)):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def test_it_finds_a_fedora_tree(site):
    root, base = site
    _lay_out(root / "fedora/os", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img")
    assert tree.find_boot_files(f"{base}/fedora/os") == (
        f"{base}/fedora/os/images/pxeboot/vmlinuz",
        f"{base}/fedora/os/images/pxeboot/initrd.img",
    )


def test_it_finds_a_debian_mirror_tree(site):
    root, base = site
    netboot = "main/installer-amd64/current/images/netboot/debian-installer/amd64"
    _lay_out(root / "debian/dists/bookworm", f"{netboot}/linux", f"{netboot}/initrd.gz")
    kernel, initrd = tree.find_boot_files(f"{base}/debian/dists/bookworm/")
    assert kernel == f"{base}/debian/dists/bookworm/{netboot}/linux"
    assert initrd == f"{base}/debian/dists/bookworm/{netboot}/initrd.gz"


def test_it_skips_a_layout_with_only_a_kernel(site):
    root, base = site
    (root / "images/pxeboot").mkdir(parents=True)
    (root / "images/pxeboot/vmlinuz").write_bytes(KERNEL)
    _lay_out(root, "install.amd/vmlinuz", "install.amd/initrd.gz")
    assert tree.find_boot_files(base) == (
        f"{base}/install.amd/vmlinuz",
        f"{base}/install.amd/initrd.gz",
    )


def test_it_falls_back_to_a_ranged_get_when_head_is_refused(tmp_path):
    _lay_out(tmp_path, "casper/vmlinuz", "casper/initrd")
    server, base = _serve(tmp_path, _NoHeadHandler)
    try:
        assert tree.find_boot_files(base) == (f"{base}/casper/vmlinuz", f"{base}/casper/initrd")
    finally:
        server.shutdown()
        server.server_close()


def test_it_lists_the_layouts_it_tried_in_an_empty_tree(site):
    _, base = site
    with pytest.raises(ServiceError) as exc:
        tree.find_boot_files(base)
    assert exc.value.field == "location"
    for _, kernel, _ in tree.LAYOUTS:
        assert kernel in exc.value.message


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/pub/", "gopher://127.0.0.1/", "http:///nohost"]
)
def test_it_refuses_urls_that_are_not_http(url):
    with pytest.raises(ServiceError, match="is not an http or https URL") as exc:
        tree.find_boot_files(url)
    assert exc.value.field == "location"
    with pytest.raises(ServiceError, match="is not an http or https URL"):
        tree.fetch(url, max_bytes=1024)


def test_it_refuses_a_redirect_away_from_http(tmp_path):
    server, base = _serve(tmp_path, _FtpRedirectHandler)
    try:
        with pytest.raises(ServiceError, match="redirects to ftp://127.0.0.1/pub/vmlinuz"):
            tree.find_boot_files(base)
    finally:
        server.shutdown()
        server.server_close()


def test_it_says_when_the_server_cannot_be_reached(site):
    _, base = site
    closed = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    port = closed.server_address[1]
    closed.server_close()
    django_settings.PANEL_INSTALL_MIRRORS.append(f"http://127.0.0.1:{port}/")
    with pytest.raises(ServiceError, match="Cannot reach"):
        tree.find_boot_files(f"http://127.0.0.1:{port}/")


def test_it_fetches_with_progress(site):
    root, base = site
    _lay_out(root, "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img")
    seen = []
    data = tree.fetch(
        f"{base}/images/pxeboot/initrd.img",
        max_bytes=len(INITRD),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert data == INITRD
    assert seen[-1] == (len(INITRD), len(INITRD))


def test_it_refuses_a_body_over_max_bytes(site):
    root, base = site
    _lay_out(root, "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img")
    with pytest.raises(ServiceError, match="is larger than 1000 bytes") as exc:
        tree.fetch(f"{base}/images/pxeboot/vmlinuz", max_bytes=1000)
    assert exc.value.field == "location"


def test_it_reports_a_missing_file(site):
    _, base = site
    with pytest.raises(ServiceError, match="answered 404"):
        tree.fetch(f"{base}/nothing-here", max_bytes=1000)
