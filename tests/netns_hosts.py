"""Pytest plugin: test hosts in network namespaces of their own, reached over SSH.

Listed in ``pytest_plugins`` of tests/conftest.py. Fixture:

``netns_host_b`` (session)
    Starts host "b" with ``scripts/netns-host.sh`` (its own network namespace with a
    veth pair to this machine, its own libvirtd, virtlogd and sshd; root may log in
    with the panel's SSH key only) and returns it: its ``qemu+ssh`` URI, its address
    and the fingerprint of its SSH host key. Stops it at the end of the session.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from panel import sshkeys

REPO_ROOT = Path(__file__).resolve().parent.parent
NETNS_HOST_SCRIPT = REPO_ROOT / "scripts" / "netns-host.sh"


@dataclass(frozen=True)
class NetnsHost:
    name: str
    uri: str
    address: str

    @property
    def host_key_fingerprint(self) -> str:
        """The fingerprint of the host key its sshd offers now."""
        result = netns_host("status", self.name)
        assert result.returncode == 0, result.stdout + result.stderr
        return sshkeys.scan(self.uri).fingerprint

    def rekey(self) -> None:
        """Give its sshd a new host key and restart it."""
        result = netns_host("rekey", self.name)
        assert result.returncode == 0, result.stdout + result.stderr


def netns_host(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(NETNS_HOST_SCRIPT), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def netns_host_b(tmp_path_factory):
    keys = tmp_path_factory.mktemp("netns-b") / "authorized_keys"
    keys.write_text(sshkeys.panel_public_key() + "\n")
    result = netns_host("start", "b", str(keys))
    if result.returncode != 0:
        pytest.fail(f"{NETNS_HOST_SCRIPT} start b failed:\n{result.stdout}{result.stderr}")
    address = netns_host("address", "b").stdout.strip()
    yield NetnsHost("b", result.stdout.strip().splitlines()[-1], address)
    result = netns_host("stop", "b")
    if result.returncode != 0:
        pytest.fail(f"{NETNS_HOST_SCRIPT} stop b failed:\n{result.stdout}{result.stderr}")
