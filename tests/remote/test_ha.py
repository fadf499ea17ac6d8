"""HA failover between the namespaced hosts b and c (tests/netns_hosts.py), with fencing.

An HA VM with its disk on the shared storage runs on b. With agent fencing, cutting b's
link makes b's HA agent (scripts/panel-ha-agent, started by scripts/netns-host.sh)
destroy it once the panel's lease runs out, and the HA monitor restart it on c once b is
lost: never both running at once, looked at through each host's own socket every 0.2 s.
virtlockd holds the disk's lease on c, and a second start on b is refused. With manual
fencing, an administrator's word that b is off restarts it on c.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import uuid as uuidlib
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from panel import hypervisor, sshkeys
from panel.choices import JobState
from panel.models import AuditEvent, Host, Job
from storage.models import StoragePool
from tests.conftest import guest_spec
from vms.models import VirtualMachine
from vms.services import sync_domain
from vms.services.ha_monitor import Monitor

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = Path("/var/lib/panel-shared")


@pytest.fixture
def ha_settings(settings):
    settings.PANEL_HA_AGENT = str(REPO_ROOT / "scripts" / "panel-ha-agent")
    settings.PANEL_HA_FENCE_SECONDS = 6
    settings.PANEL_HA_RENEW_SECONDS = 1
    settings.PANEL_HA_MARGIN_SECONDS = 3
    return settings


@pytest.fixture
def admin(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser("root", "", "root-pass-3k")


def add_host(netns_host) -> Host:
    """The namespaced host as the panel knows it once an admin added it (key pinned)."""
    key = sshkeys.scan(netns_host.uri)
    sshkeys.write_known_hosts(netns_host.uri, key.line)
    host = Host.objects.create(
        name=netns_host.name, uri=netns_host.uri, state="up", ssh_host_key=key.line
    )
    StoragePool.objects.create(
        host=host, name="shared", type="dir", state="active", target_path=str(SHARED)
    )
    return host


def api(user, path: str, body: dict | None = None) -> tuple[int, dict]:
    """POST /api/v1/<path> as user."""
    client = APIClient()
    client.force_authenticate(user)
    response = client.post(f"/api/v1/{path}", body or {}, format="json")
    return response.status_code, response.json()


@pytest.fixture
def ha_vm(panel_test_guest, netns_host_b, netns_host_c):
    """make(host): the tiny guest with a disk on the shared storage, running on host."""
    made: list[tuple[str, Path]] = []

    def make(host: Host) -> VirtualMachine:
        disk = SHARED / f"ha-{uuidlib.uuid4().hex[:8]}.raw"
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "8M"], check=True)
        spec = guest_spec(
            panel_test_guest, disks=(hypervisor.DiskSpec(path=str(disk), format="raw"),)
        )
        info = hypervisor.define_domain(host.uri, spec)
        made.append((info.uuid, disk))
        return sync_domain(host, hypervisor.start_domain(host.uri, info.uuid))

    yield make
    # This process's connections closed while the hosts still answer: closing one to a
    # host that is gone (the session's end stops them) waits for ever.
    for netns_host in (netns_host_b, netns_host_c):
        hypervisor.forget_connection(netns_host.uri)
    for uuid, disk in made:
        for netns_host in (netns_host_b, netns_host_c):
            virsh(netns_host, "destroy", uuid)
            virsh(netns_host, "undefine", uuid)
        disk.unlink(missing_ok=True)


@contextlib.contextmanager
def ha_monitor():
    """The HA monitor running in this process for the block; its leases released after."""
    monitor = Monitor()
    thread = threading.Thread(target=monitor.run, name="ha-monitor", daemon=True)
    thread.start()
    try:
        yield monitor
    finally:
        monitor.stop()
        thread.join(30)


def virsh(netns_host, *args: str) -> subprocess.CompletedProcess:
    """virsh on the host's own socket: it answers even while the host's link is cut (the
    panel's URIs take no socket parameter)."""
    return subprocess.run(
        ["virsh", "-q", "-c", netns_host.socket_uri, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def domstate(netns_host, uuid: str) -> str:
    """running, shut off, ... or "" when the host has no such domain."""
    result = virsh(netns_host, "domstate", uuid)
    return result.stdout.strip() if result.returncode == 0 else ""


class Watch:
    """Where the VM runs, read from b and c through their own sockets every 0.2 s."""

    def __init__(self, uuid: str, *hosts) -> None:
        self.uuid, self.hosts = uuid, hosts
        self.seen: list[tuple[float, tuple[str, ...]]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def running_on(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts if domstate(h, self.uuid) == "running")

    def run(self) -> None:
        while not self.stopping.is_set():
            self.seen.append((time.monotonic(), self.running_on()))
            self.stopping.wait(0.2)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)

    def wait_for(self, where: tuple[str, ...], timeout: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.seen and self.seen[-1][1] == where:
                return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"not running on {where} after {timeout} s: {self.seen[-5:]}")

    def twice(self) -> list[tuple[float, tuple[str, ...]]]:
        return [s for s in self.seen if len(s[1]) > 1]


def lease_holder(disk: str) -> str:
    """The command of the process holding a POSIX write lock on the whole disk file."""
    inode = Path(disk).stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "POSIX" in fields and "WRITE" in fields and fields[5].endswith(f":{inode}"):
            return Path(f"/proc/{fields[4]}/comm").read_text().strip()
    return ""


def wait_until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} after {timeout} s")


def test_a_lost_host_is_fenced_by_its_agent_and_its_ha_vm_runs_on_c_never_twice(
    admin, ha_settings, netns_host_b, netns_host_c, ha_vm
):
    b, c = add_host(netns_host_b), add_host(netns_host_c)
    vm = ha_vm(b)
    status, body = api(admin, f"hosts/{b.pk}/fencing/", {"fencing": "agent"})
    assert status == 200 and body["why_not_restarted"] == "", body
    status, body = api(admin, f"vms/{vm.pk}/ha/", {"enabled": True})
    assert (status, body) == (200, {"id": str(vm.pk), "ha": True})
    disk = vm.disks[0]["source"]

    try:
        with ha_monitor(), Watch(str(vm.pk), netns_host_b, netns_host_c) as watch:
            wait_until(lambda: Host.objects.get(pk=b.pk).ha_reached_at, 15, "no lease renewed")
            watch.wait_for(("b",), 10)
            netns_host_b.cut()
            took = watch.wait_for(("c",), 60)
            time.sleep(1)
    except BaseException:
        netns_host_b.mend()
        raise
    assert not watch.twice(), f"running on both at once: {watch.twice()[:3]}"
    assert took < 60

    # b's copy was stopped by b's own agent, which says so in its log.
    assert domstate(netns_host_b, str(vm.pk)) == "shut off"
    state_dir = Path(netns_host_b.socket_uri.split("socket=")[1]).parent.parent
    assert (
        f"fenced: destroyed HA domain {vm.pk}" in (state_dir / "log/panel-ha-agent.log").read_text()
    )
    vm.refresh_from_db()
    assert (vm.host_id, vm.state) == (c.pk, "running")
    job = Job.objects.get(kind="vm.ha_restart")
    assert job.state == JobState.SUCCEEDED, job.message
    assert AuditEvent.objects.filter(
        action="vm.ha_restart", detail__contains="from b to c"
    ).exists()

    # c's virtlockd holds the disk's lease; b cannot start it a second time.
    assert lease_holder(disk) == "virtlockd"
    second = virsh(netns_host_b, "start", str(vm.pk))
    assert second.returncode != 0 and "lock" in second.stderr, second.stderr
    assert domstate(netns_host_c, str(vm.pk)) == "running"

    # b back: the monitor reaches it again and undefines its stale copy.
    netns_host_b.mend()
    with ha_monitor():
        wait_until(
            lambda: (
                Host.objects.filter(pk=b.pk, fenced_at=None).exclude(ha_reached_at=None).exists()
            ),
            30,
            "b not reached again",
        )
    assert domstate(netns_host_b, str(vm.pk)) == ""


@pytest.mark.stack
def test_an_admin_confirming_b_off_restarts_its_ha_vm_on_c(
    admin, ha_settings, stack, netns_host_b, netns_host_c, ha_vm, django_user_model
):
    b, c = add_host(netns_host_b), add_host(netns_host_c)
    vm = ha_vm(b)
    assert api(admin, f"hosts/{b.pk}/fencing/", {"fencing": "manual"})[0] == 200
    assert api(admin, f"vms/{vm.pk}/ha/", {"enabled": True}) == (
        200,
        {"id": str(vm.pk), "ha": True},
    )
    someone = django_user_model.objects.create_user("someone", "", "someone-pass-9Lm")

    with ha_monitor():
        wait_until(lambda: Host.objects.get(pk=b.pk).ha_reached_at, 15, "b never reached")
        # The panel still reaches b: it is not off.
        status, body = api(admin, f"hosts/{b.pk}/confirm-off/")
        assert status == 409 and "it is not off" in body["detail"], body
        netns_host_b.cut()
        try:
            # Whoever powers b off does so; the admin then says so, once the panel has not
            # reached b for long enough. Nobody else may.
            virsh(netns_host_b, "destroy", str(vm.pk))
            assert api(someone, f"hosts/{b.pk}/confirm-off/")[0] in (403, 404)
            status, body = wait_until(
                lambda: (r := api(admin, f"hosts/{b.pk}/confirm-off/"))[0] == 202 and r,
                30,
                "the confirmation still refused",
            )
            job = wait_until(
                lambda: Job.objects.filter(pk=body["jobs"][0], finished__isnull=False).first(),
                60,
                "the restart job did not finish",
            )
            assert job.state == JobState.SUCCEEDED, job.message
            assert domstate(netns_host_c, str(vm.pk)) == "running"
            assert domstate(netns_host_b, str(vm.pk)) == "shut off"
        finally:
            netns_host_b.mend()
    vm.refresh_from_db()
    assert (vm.host_id, vm.state) == (c.pk, "running")
    assert AuditEvent.objects.filter(action="host.confirm_off", result="success").count() == 1
