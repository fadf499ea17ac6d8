"""Pytest plugin: test hosts in network namespaces of their own, reached over SSH.

Listed in ``pytest_plugins`` of tests/conftest.py. Fixtures:

``netns_host_b``, ``netns_host_c`` (session)
    Start host "b" (or "c") with ``scripts/netns-host.sh``: its own network namespace
    on the hosts' bridge, its own libvirtd, virtlogd and sshd; root may log in with the
    panel's SSH key only. Each is a NetnsHost: its ``qemu+ssh`` URI, its address, the
    fingerprint of its SSH host key, the URI of its libvirtd's unix socket (for tests
    to look at the host even while its network is cut), and cut() / mend() of its link.
    Each is stopped at the end of the session.
``netns_panel_address`` (session)
    This machine's address on the hosts' bridge: where the hosts reach host A.

``PANEL_NETNS_ID`` in the environment picks the bridge and namespaces, so runs with
different IDs do not meet.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from panel import hypervisor, sshkeys

REPO_ROOT = Path(__file__).resolve().parent.parent
NETNS_HOST_SCRIPT = REPO_ROOT / "scripts" / "netns-host.sh"


@dataclass(frozen=True)
class NetnsHost:
    name: str
    uri: str
    address: str
    socket_uri: str

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

    def cut(self) -> None:
        """Take its link down: the host is off the network, its guests still run."""
        result = netns_host("cut", self.name)
        assert result.returncode == 0, result.stdout + result.stderr

    def mend(self) -> None:
        """Bring its link up again."""
        result = netns_host("mend", self.name)
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


def start_host(name: str, tmp_path_factory):
    keys = tmp_path_factory.mktemp(f"netns-{name}") / "authorized_keys"
    keys.write_text(sshkeys.panel_public_key() + "\n")
    result = netns_host("start", name, str(keys))
    if result.returncode != 0:
        pytest.fail(f"{NETNS_HOST_SCRIPT} start {name} failed:\n{result.stdout}{result.stderr}")
    address = netns_host("address", name).stdout.strip()
    state = netns_host("state-dir", name).stdout.strip()
    socket_uri = f"qemu+unix:///system?socket={state}/run/libvirt-sock"
    uri = result.stdout.strip().splitlines()[-1]
    yield NetnsHost(name, uri, address, socket_uri)
    # This process's libvirt connection closed while the host still answers (its link
    # mended, should a test have left it cut): closing one to a stopped host never ends.
    netns_host("mend", name)
    hypervisor.forget_connection(uri)
    result = netns_host("stop", name)
    if result.returncode != 0:
        pytest.fail(f"{NETNS_HOST_SCRIPT} stop {name} failed:\n{result.stdout}{result.stderr}")


@pytest.fixture(scope="session")
def netns_host_b(tmp_path_factory):
    yield from start_host("b", tmp_path_factory)


@pytest.fixture(scope="session")
def netns_host_c(tmp_path_factory):
    yield from start_host("c", tmp_path_factory)


@pytest.fixture(scope="session")
def netns_panel_address() -> str:
    result = netns_host("panel-address")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()
