"""The image library's tests: a mirror on 127.0.0.1 serving a small cloud image (an empty
qcow2 made by qemu-img) with its SHA256SUMS, allowed as the one library mirror."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.create.conftest import created, project  # noqa: F401  (fixtures)
from tests.stack import LIBRARY_MIRROR, LIBRARY_MIRROR_PORT
from tests.storage.conftest import (  # noqa: F401  (fixtures)
    dir_pool,
    host_facts,
    local_host,
    pool_dir,
)

IMAGE = "tiny-cloud.qcow2"


@dataclass(frozen=True)
class Mirror:
    base: str  # http://127.0.0.1:<port>/images/
    root: Path  # the directory served as /images/
    sha256: str  # of IMAGE

    def url(self, name: str) -> str:
        return self.base + name


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@contextlib.contextmanager
def serve(directory: Path, port: int = 0) -> Iterator[int]:
    """directory served over HTTP on 127.0.0.1 (port 0: any free one); the port."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def make_mirror(root: Path) -> str:
    """The tiny cloud image, a qcow2 with a backing file, and SHA256SUMS in root: the
    image's digest."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    qemu_img("create", "-f", "qcow2", str(images / IMAGE), "32M")
    qemu_img(
        "create", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw",
        str(images / "shadow.qcow2"), "32M",
    )  # fmt: skip
    qemu_img("create", "-f", "raw", str(images / "installer.iso"), "2M")
    sums = []
    for path in sorted(images.iterdir()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        sums.append(f"{digest} *{path.name}" if path.suffix == ".iso" else f"{digest}  {path.name}")
    (images / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return hashlib.sha256((images / IMAGE).read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path, settings) -> Iterator[Mirror]:
    """The mirror on a port of its own, allowed in this process's settings."""
    digest = make_mirror(tmp_path)
    with serve(tmp_path) as port:
        base = f"http://127.0.0.1:{port}/images/"
        settings.PANEL_LIBRARY_MIRRORS = [base]
        yield Mirror(base, tmp_path / "images", digest)


@pytest.fixture
def stack_mirror(tmp_path, settings) -> Iterator[Mirror]:
    """The mirror where the running stack's processes allow it (tests.stack.LIBRARY_MIRROR)."""
    digest = make_mirror(tmp_path)
    with serve(tmp_path, LIBRARY_MIRROR_PORT):
        settings.PANEL_LIBRARY_MIRRORS = [LIBRARY_MIRROR]
        yield Mirror(LIBRARY_MIRROR, tmp_path / "images", digest)
