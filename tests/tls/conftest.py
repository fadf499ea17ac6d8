"""Hosts reached over qemu+tls (tests/tls_host.py): the panel's certificate directory of
each test, and cleanup of the domains a test made there."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from panel import hypervisor
from panel.models import Host


@pytest.fixture(autouse=True)
def pki_dir(settings, tmp_path) -> Path:
    """PANEL_PKI_DIR for the test: a directory of its own."""
    settings.PANEL_PKI_DIR = tmp_path / "pki"
    return settings.PANEL_PKI_DIR


def kept_files(pki_dir: Path) -> list[str]:
    """Everything under the panel's certificate directory, relative to it."""
    if not pki_dir.exists():
        return []
    return sorted(str(p.relative_to(pki_dir)) for p in pki_dir.rglob("*"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def host_set(host: Host) -> Path:
    """The directory of the certificates the panel uses for host."""
    link = hypervisor.pki_path(host.uri)
    assert link.is_symlink()
    return link.resolve()


@pytest.fixture
def tls_domains(tls_host_uri) -> Iterator[list[str]]:
    """UUIDs of domains a test made on the TLS host; undefined afterwards."""
    made: list[str] = []
    yield made
    for uuid in made:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(tls_host_uri, uuid)
