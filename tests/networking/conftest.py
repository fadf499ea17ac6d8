"""Networks for the networking tests: names, subnets and bridges that are the tests' own.

Test networks are isolated (no <forward>) on the real libvirtd, named
``pt-net-<random>`` on 10.213.<random>.0/24 and fd00:213:<random>::/64 with
bridges ``pt-br-<random>``; every one a test names is stopped and undefined
afterwards. Other modes are only defined on libvirt's test:///default driver.
The people, host and guest fixtures are the VM tests' (tests/vms/conftest.py).
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from panel import hypervisor
from panel.choices import HostState
from panel.models import Host
from tests.conftest import LOCAL_URI
from tests.vms.conftest import (  # noqa: F401 - fixtures shared with the VM tests
    admin,
    alpha,
    api_for,
    beta,
    client_for,
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    member,
    people,
)

TEST_URI = "test:///default"


def virsh(*args: str, uri: str = LOCAL_URI) -> str:
    result = subprocess.run(
        ["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"virsh {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def network_names(uri: str = LOCAL_URI) -> set[str]:
    """Every network libvirt has defined or running, by name."""
    return {n.name for n in hypervisor.list_networks(uri)}


@dataclass
class Nets:
    """Unique names, subnets and bridge names; what it named is removed afterwards."""

    uri: str = LOCAL_URI
    names: list[str] = field(default_factory=list)
    octets: set[int] = field(default_factory=set)

    def name(self) -> str:
        name = f"pt-net-{uuidlib.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def octet(self) -> int:
        used = self.octets | _octets_in_use(self.uri)
        octet = random.choice([o for o in range(10, 250) if o not in used])
        self.octets.add(octet)
        return octet

    @staticmethod
    def bridge() -> str:
        return f"pt-br-{uuidlib.uuid4().hex[:6]}"

    def cleanup(self) -> None:
        for name in self.names:
            with contextlib.suppress(hypervisor.HypervisorError):
                hypervisor.delete_network(self.uri, name)


def _octets_in_use(uri: str) -> set[int]:
    used = set()
    for net in hypervisor.list_networks(uri):
        address = str(net.ipv4.get("address", ""))
        if address.startswith("10.213."):
            used.add(int(address.split(".")[2]))
    return used


@pytest.fixture
def nets() -> Iterator[Nets]:
    made = Nets()
    yield made
    made.cleanup()


@pytest.fixture
def fake_nets() -> Iterator[Nets]:
    made = Nets(uri=TEST_URI)
    yield made
    made.cleanup()


@pytest.fixture
def fake_host(db) -> Host:
    """libvirt's test:///default driver as a host: real API, nothing really started."""
    return Host.objects.create(name="fake", uri=TEST_URI, state=HostState.UP, domain_type="test")


def isolated(nets: Nets, **extra):  # type: ignore[no-untyped-def]
    """Service arguments for an isolated IPv4 network on a fresh 10.213.x.0/24."""
    x = nets.octet()
    values = {
        "name": nets.name(),
        "mode": "isolated",
        "bridge": nets.bridge(),
        "ipv4": {
            "address": f"10.213.{x}.1",
            "prefix": 24,
            "dhcp_start": f"10.213.{x}.100",
            "dhcp_end": f"10.213.{x}.150",
        },
    }
    values.update(extra)
    return values
