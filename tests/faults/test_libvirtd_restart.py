"""libvirtd killed (SIGKILL) under a running panel, then started again.

The panel's real processes run (the web server, a Celery worker, the host watcher)
against a private libvirtd holding the tiny guest. While pages, API clients,
a serial console and a volume copy are busy with that host, its libvirtd is
killed: the host must show down within seconds (an admin who subscribed is told), nothing
may answer 5xx, the
console must close with a message, and the copy must fail cleanly without
leaving a half-written volume. When libvirtd returns, the host must be up
within 10 s and the inventory must match what the host now holds.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from panel import hypervisor
from panel.choices import HostState, NotificationKind
from panel.hypervisor.xml import build_domain
from panel.models import Host, Job, Notification, Subscription
from storage.models import Volume
from tests.conftest import guest_spec
from tests.faults.panel_client import Panel
from tests.stack import ws_read_until
from vms.models import VirtualMachine

pytest_plugins = ["tests.faults.fault_host"]
pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(400)]

# How long the panel may take to notice a change (host down or up, inventory read, a
# console closed): generous deadlines for a loaded machine, not speeds. The test prints
# how long it really took.
DEADLINE = 45

POOL_DIR = "/var/lib/libvirt/images"  # inside the fault host's namespace
BIG_VOLUME_BYTES = 6 * 1024**3


@pytest.fixture
def panel(stack, transactional_db, django_user_model, client) -> Panel:
    admin = django_user_model.objects.create_superuser("root", "", "root-pass-3k")
    client.force_login(admin)
    token, _ = Token.objects.get_or_create(user=admin)
    return Panel(stack.url, client.cookies["sessionid"].value, token.key)


def told(user, kind: str) -> bool:  # type: ignore[no-untyped-def]
    return Notification.objects.filter(user=user, kind=kind).exists()


@contextlib.contextmanager
def open_console(panel: Panel, stack, vm_id: str):  # type: ignore[no-untyped-def]
    """The VM's serial console websocket, at the guest's prompt."""
    status, body = panel.api("POST", f"vms/{vm_id}/console/", {"type": "serial"})
    assert status == 200, body
    with connect(body["url"], additional_headers={"Origin": stack.url}, open_timeout=10) as ws:
        ws.send(b"\r")
        ws_read_until(ws, b"guest# ", 30)
        yield ws


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def host_state(panel: Panel, host_id: int) -> str:
    status, body = panel.api("GET", f"hosts/{host_id}/")
    assert status == 200, body
    return body["state"]


def test_it_rides_out_libvirtd_killed_and_restarted(
    stack, panel, fault_host, host_watcher, panel_test_guest
):
    uri = fault_host.uri
    # The host: a running guest, a defined guest, a pool with a big volume.
    guest = hypervisor.define_domain(uri, guest_spec(panel_test_guest, name="fault-guest"))
    hypervisor.start_domain(uri, guest.uuid)
    spare = hypervisor.define_domain(uri, guest_spec(panel_test_guest, name="fault-spare"))
    fault_host.virsh("pool-define-as", "faultpool", "dir", "--target", POOL_DIR)
    fault_host.virsh("pool-start", "faultpool")
    fault_host.virsh("vol-create-as", "faultpool", "big.raw", str(BIG_VOLUME_BYTES))

    # Registered down: the watcher marking it up proves it subscribed.
    host = Host.objects.create(name="fault", uri=uri, state=HostState.DOWN)
    assert wait_for(lambda: host_state(panel, host.pk) == "up", DEADLINE), (
        "the watcher never took the host up"
    )
    assert wait_for(
        lambda: (
            VirtualMachine.objects.filter(pk=guest.uuid, state="running").exists()
            and Volume.objects.filter(pool__host=host, name="big.raw").exists()
        ),
        DEADLINE,
    ), "the inventory of the new host was not read"

    # The admin subscribes to the host's comings and goings, in the panel only.
    admin = Token.objects.get(key=panel.token).user
    Subscription.objects.create(
        user=admin, kinds=[NotificationKind.HOST_DOWN, NotificationKind.HOST_UP]
    )

    with open_console(panel, stack, guest.uuid) as console:
        big = Volume.objects.get(pool__host=host, name="big.raw")
        # Made with virsh, behind the panel: an admin takes it in, declaring its format.
        status, body = panel.api(
            "POST", f"volumes/{big.pk}/assign/", {"project": None, "format": "raw"}
        )
        assert status == 200, body
        status, body = panel.api("POST", f"volumes/{big.pk}/clone/", {"name": "big-copy.raw"})
        assert status == 202, body
        job_id = body["job"]
        assert wait_for(
            lambda: Job.objects.filter(pk=job_id, state="running", progress__gte=1).exists(),
            DEADLINE,
        ), f"the copy did not start: {Job.objects.get(pk=job_id).__dict__}"
        assert "big-copy.raw" in fault_host.virsh("vol-list", "faultpool")

        fault_host.kill_libvirtd()
        killed = time.monotonic()

        assert wait_for(lambda: host_state(panel, host.pk) == "down", DEADLINE), (
            f"the host did not show down within {DEADLINE} s"
        )
        down_after = time.monotonic() - killed
        assert Host.objects.get(pk=host.pk).last_error
        assert wait_for(lambda: told(admin, NotificationKind.HOST_DOWN), DEADLINE), (
            "the admin was not told the host went down"
        )
        status, page = panel.page(f"/hosts/{host.pk}/")
        assert status == 200 and "connection to libvirtd was lost" in page

        # The console says why it closed, and does so by itself.
        text, code = drain(console, DEADLINE)
        assert code == 4503, (code, text[-300:])
        assert b"connection to host fault was lost" in text

    assert wait_for(lambda: Job.objects.get(pk=job_id).is_finished, DEADLINE), (
        "the copy job did not end when its host went away"
    )
    job = Job.objects.get(pk=job_id)
    assert job.state == "failed", (job.state, job.message)
    assert "fault cannot be reached" in job.message and "partial copy" in job.message
    assert not Volume.objects.filter(name="big-copy.raw").exists()

    # Pages and API calls while the host is down: answers, never a 5xx.
    vm_id = guest.uuid
    for path in [
        "/",
        "/hosts/",
        f"/hosts/{host.pk}/",
        "/vms/",
        f"/vms/{vm_id}/",
        "/jobs/",
        f"/jobs/{job_id}/",
        "/storage/",
    ]:
        status, _ = panel.page(path)
        assert status == 200, (path, status)
    for path in ["vms/", f"vms/{vm_id}/", f"hosts/{host.pk}/", "volumes/", f"jobs/{job_id}/"]:
        status, body = panel.api("GET", path)
        assert status == 200, (path, status, body)
    # A job action is refused up front (the host is marked down); a direct one asks the
    # host and says it cannot be reached. Both 503: try again later, nothing was done.
    status, answer = panel.api("POST", f"vms/{vm_id}/shutdown/", {"mode": "acpi"})
    assert status == 503 and answer["detail"].startswith("fault is down ("), (status, answer)
    for action in ("reboot", "force-off"):
        status, answer = panel.api("POST", f"vms/{vm_id}/{action}/", {})
        assert status == 503, (action, status, answer)
        assert answer["detail"].startswith("fault cannot be reached: "), (action, answer)
    status, answer = panel.api("POST", f"vms/{spare.uuid}/start/", {})
    assert status == 503 and answer["detail"].startswith("fault cannot be reached: "), answer
    # A serial console ticket needs nothing of the host (the row still says running).
    status, answer = panel.api("POST", f"vms/{vm_id}/console/", {"type": "serial"})
    assert status == 200 and answer["url"].startswith(stack.ws_url), (status, answer)

    # Changed while libvirtd is away: one definition gone, one new.
    (fault_host.etc_qemu / "fault-spare.xml").unlink()
    newcomer = guest_spec(panel_test_guest, name="fault-newcomer")
    (fault_host.etc_qemu / "fault-newcomer.xml").write_text(build_domain(newcomer))

    fault_host.revive()
    back = time.monotonic()
    assert wait_for(lambda: host_state(panel, host.pk) == "up", DEADLINE), (
        f"the host was not up within {DEADLINE} s of libvirtd's return"
    )
    up_after = time.monotonic() - back
    assert wait_for(lambda: told(admin, NotificationKind.HOST_UP), DEADLINE), (
        "the admin was not told the host came back"
    )
    assert [n.title for n in Notification.objects.filter(user=admin).order_by("pk")] == [
        "Host fault went down",
        "Host fault came back",
    ]
    assert wait_for(
        lambda: (
            VirtualMachine.objects.filter(pk=spare.uuid, state="missing").exists()
            and VirtualMachine.objects.filter(
                host=host, name="fault-newcomer", state="shutoff"
            ).exists()
        ),
        DEADLINE,
    ), list(VirtualMachine.objects.values_list("name", "state"))
    assert VirtualMachine.objects.get(pk=vm_id).state == "running"
    assert "big-copy.raw" not in fault_host.virsh("vol-list", "faultpool"), (
        "a half-made copy was left"
    )

    # The guest never stopped: its console works again.
    with open_console(panel, stack, vm_id) as console:
        console.send(b"echo back-$((6*7))\r")
        ws_read_until(console, b"back-42", DEADLINE)
    print(f"down after {down_after:.1f} s, up after {up_after:.1f} s")


def drain(ws, timeout: float) -> tuple[bytes, int | None]:  # type: ignore[no-untyped-def]
    """Everything the server sends until it closes the websocket, and its close code."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            break
        except ConnectionClosed as exc:
            return seen, exc.rcvd.code if exc.rcvd else None
        seen += msg if isinstance(msg, bytes) else msg.encode()
    ws.close()
    return seen, None
