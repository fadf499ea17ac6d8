"""Two real hosts for migration: the local libvirtd and the second one
(tests/second_host.py), both as Host rows, with the people of tests/vms and
cleanup of every domain and pool a test makes, on both daemons."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from panel import hypervisor
from panel.choices import HostState
from panel.models import Host
from tests.conftest import LOCAL_URI, wait_for_console_prompt
from tests.vms.conftest import (  # noqa: F401  (fixtures)
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
from vms.models import VirtualMachine

IMAGES = Path("/var/lib/libvirt/images")
# The second host's /var/lib/libvirt is this directory of the host (scripts/second-libvirtd.sh).
SECOND_LIB = Path("/var/lib/panel-second-host/lib")


def virsh(uri: str, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, f"virsh {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture
def second_host(db, second_host_uri) -> Host:
    return Host.objects.create(
        name="second", uri=second_host_uri, state=HostState.UP, domain_type="qemu"
    )


@pytest.fixture
def guest(make_vm, second_host_uri) -> Iterator[Callable[..., VirtualMachine]]:  # noqa: F811
    """guest(**spec overrides): the tiny guest running on the local host as alpha's VM
    (owned by member); removed from both hosts afterwards, wherever it ended up."""
    made: list[str] = []

    def make(*, running: bool = True, **overrides: Any) -> VirtualMachine:
        vm = make_vm(running=running, **overrides)
        made.append(str(vm.pk))
        return vm

    yield make
    for uuid in made:
        for uri in (LOCAL_URI, second_host_uri):
            with contextlib.suppress(hypervisor.HypervisorError):
                hypervisor.undefine_domain(uri, uuid)


def console_says(
    uri: str, uuid: str, command: bytes, answer: bytes, *, boot: bool = False
) -> bytes:
    """Type command on the guest's serial console on that host; wait for answer."""
    stream = hypervisor.open_console(uri, uuid)
    try:
        if boot:
            wait_for_console_prompt(stream)
        else:
            stream.send(b"\n")
            stream.read_until(b"guest# ", 15)
        mark = len(stream.output())
        stream.send(command + b"\n")
        return stream.read_until(answer, 20, start=mark)[mark:]
    finally:
        stream.close()


def where(vm: VirtualMachine, second_host_uri: str) -> tuple[str, str]:
    """(state on the local host, state on the second host), 'absent' where it is not."""
    return hypervisor.domain_location(LOCAL_URI, second_host_uri, str(vm.pk))


class Pools:
    """Dir pools made for a test: on the local host only, or on the second host only."""

    def __init__(self, second_uri: str) -> None:
        self.second_uri = second_uri
        self.made: list[tuple[str, str, Path]] = []

    def local(self) -> tuple[str, Path]:
        name = f"paneltest-src-{uuidlib.uuid4().hex[:8]}"
        path = IMAGES / name
        virsh(LOCAL_URI, "pool-create-as", name, "dir", "--target", str(path), "--build")
        path.chmod(0o755)
        self.made.append((LOCAL_URI, name, path))
        return name, path

    def second(self) -> tuple[str, Path]:
        """A pool the second host alone knows; returns its name and its path on this machine."""
        name = f"paneltest-dst-{uuidlib.uuid4().hex[:8]}"
        inside = IMAGES / name
        virsh(self.second_uri, "pool-create-as", name, "dir", "--target", str(inside), "--build")
        outside = SECOND_LIB / "images" / name
        self.made.append((self.second_uri, name, outside))
        return name, outside

    def cleanup(self) -> None:
        for uri, name, path in self.made:
            volumes = virsh(uri, "vol-list", name, check=False).splitlines()[2:]
            for line in volumes:
                if line.strip():
                    virsh(uri, "vol-delete", "--pool", name, line.split()[0], check=False)
            virsh(uri, "pool-destroy", name, check=False)
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pools(second_host_uri) -> Iterator[Pools]:
    made = Pools(second_host_uri)
    yield made
    made.cleanup()
