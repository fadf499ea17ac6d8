"""A host in a network namespace of its own (tests/netns_hosts.py), whose loopback is
not the panel's, added over qemu+ssh through the running panel: its host key confirmed
and pinned, a changed key refused until accepted, and a VM there with its serial and
VNC consoles, the VNC one through an SSH tunnel to that host's own loopback."""

from __future__ import annotations

import contextlib
import json
import time
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from panel import hypervisor, services, sshkeys
from panel.actors import Actor
from panel.choices import JobKind
from panel.models import AuditEvent, Host, Job
from tests.conftest import LOCAL_URI, guest_spec
from tests.stack import ws_read_until
from vms.services import sync_domain

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]


def api(stack, user, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    token, _ = Token.objects.get_or_create(user=user)
    request = Request(
        f"{stack.url}/api/v1/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token.key}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_job(job_id: int, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.is_finished:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job #{job_id} did not finish: {Job.objects.get(pk=job_id).message}")


@pytest.fixture
def admin(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser("root", "", "root-pass-3k")


@pytest.fixture
def host_b(stack, admin, netns_host_b) -> Host:
    """Host b added through the API with the fingerprint an admin confirmed."""
    status, body = api(
        stack,
        admin,
        "POST",
        "hosts/",
        {
            "name": "b",
            "uri": netns_host_b.uri,
            "ssh_host_key_fingerprint": netns_host_b.host_key_fingerprint,
        },
    )
    assert status == 201, body
    for job in Job.objects.filter(host_id=body["id"]):
        wait_job(job.pk)  # its first refresh
    return Host.objects.get(pk=body["id"])


def test_it_adds_a_host_over_ssh_once_an_admin_confirmed_its_key(
    stack, admin, client, django_user_model, netns_host_b
):
    sshkeys.forget_known_hosts(netns_host_b.uri)  # pinned by an earlier test
    status, body = api(stack, admin, "GET", "hosts/ssh-key/")
    assert status == 200 and body["authorized_keys"].startswith("ssh-ed25519 ")
    alice = django_user_model.objects.create_user("alice", "", "alice-pass-7Hq2")
    assert api(stack, alice, "GET", "hosts/ssh-key/")[0] == 403

    fingerprint = netns_host_b.host_key_fingerprint
    status, body = api(stack, admin, "POST", "hosts/scan-key/", {"uri": netns_host_b.uri})
    assert status == 200 and body == {"key_type": "ssh-ed25519", "fingerprint": fingerprint}

    # Unconfirmed, or confirmed with another key's fingerprint: refused, nothing pinned.
    status, body = api(stack, admin, "POST", "hosts/", {"name": "b", "uri": netns_host_b.uri})
    assert status == 400 and fingerprint in json.dumps(body), body
    wrong = "SHA256:" + "A" * 43
    status, body = api(
        stack,
        admin,
        "POST",
        "hosts/",
        {"name": "b", "uri": netns_host_b.uri, "ssh_host_key_fingerprint": wrong},
    )
    assert status == 400 and "not the" in json.dumps(body), body
    assert not Host.objects.exists()
    assert not hypervisor.known_hosts_path(netns_host_b.uri).exists()

    # The page: the panel's key to copy, then the host's fingerprint to confirm.
    client.force_login(admin)
    page = client.get("/hosts/add/").content.decode()
    assert sshkeys.panel_public_key() in page
    form = {"name": "b", "uri": netns_host_b.uri}
    page = client.post("/hosts/add/", form).content.decode()
    assert fingerprint in page and "Confirm the host key and add" in page
    response = client.post("/hosts/add/", form | {"ssh_fingerprint": fingerprint})
    assert response.status_code == 302, response.content.decode()[:2000]
    host = Host.objects.get(name="b")
    assert host.ssh_host_key and host.state == "up" and host.facts["hostname"]
    detail = client.get(f"/hosts/{host.pk}/").content.decode()
    assert f"over ssh as root at {netns_host_b.address}" in detail and fingerprint in detail
    status, body = api(stack, admin, "GET", f"hosts/{host.pk}/")
    assert body["reach"]["transport"] == "ssh" and body["reach"]["address"] == netns_host_b.address
    assert body["reach"]["ssh_host_key_fingerprint"] == fingerprint
    assert AuditEvent.objects.filter(
        action="host.key_pinned", detail__contains=fingerprint
    ).exists()


def test_a_changed_host_key_blocks_the_host_until_an_admin_accepts_it(
    stack, admin, client, host_b, netns_host_b
):
    old = netns_host_b.host_key_fingerprint
    netns_host_b.rekey()
    new = netns_host_b.host_key_fingerprint
    assert new != old

    status, body = api(stack, admin, "POST", f"hosts/{host_b.pk}/refresh/")
    assert status == 202
    assert wait_job(body["job"]).state == "failed"
    host_b.refresh_from_db()
    assert host_b.state == "down"
    assert old in host_b.last_error and new in host_b.last_error, host_b.last_error
    client.force_login(admin)
    page = client.get(f"/hosts/{host_b.pk}/").content.decode()
    assert "host-key-changed" in page and new in page and old in page
    assert AuditEvent.objects.filter(action="host.key_changed", detail__contains=new).exists()
    with pytest.raises(hypervisor.HostUnavailable, match="HOST KEY"):
        hypervisor.host_facts(host_b.uri)  # libvirt itself refuses the new key

    # The old fingerprint is no answer; the new one, checked, unblocks it.
    status, body = api(stack, admin, "POST", f"hosts/{host_b.pk}/accept-key/", {"fingerprint": old})
    assert status == 400, body
    status, body = api(stack, admin, "POST", f"hosts/{host_b.pk}/accept-key/", {"fingerprint": new})
    assert status == 200 and body["reach"]["ssh_host_key_fingerprint"] == new, body
    job = Job.objects.filter(host=host_b, kind=JobKind.HOST_REFRESH).order_by("-pk").first()
    assert wait_job(job.pk).state == "succeeded", job.message
    host_b.refresh_from_db()
    assert host_b.state == "up" and not host_b.ssh_host_key_offered
    assert AuditEvent.objects.filter(action="host.key_accepted", detail__contains=new).exists()


def rfb_name(url: str, origin: str | None = None) -> bytes:
    """The desktop name in the ServerInit a VNC console sends (RFB 3.8, no password)."""
    headers = {"Origin": origin} if origin else None
    with connect(url, additional_headers=headers, subprotocols=["binary"], open_timeout=10) as ws:
        buf = b""

        def read(n: int) -> bytes:
            nonlocal buf
            while len(buf) < n:
                buf += ws.recv(timeout=10)
            out, buf = buf[:n], buf[n:]
            return out

        assert read(12).startswith(b"RFB 003.008")
        ws.send(b"RFB 003.008\n")
        assert 1 in read(read(1)[0])  # security type None
        ws.send(b"\x01")
        assert read(4) == b"\x00\x00\x00\x00"
        ws.send(b"\x01")  # shared
        read(20)
        return read(int.from_bytes(read(4), "big"))


def test_a_vm_on_b_boots_and_its_consoles_reach_b_not_this_machine(
    stack, admin, host_b, panel_test_guest, django_user_model
):
    local_host = Host.objects.create(name="local", uri=LOCAL_URI, state="up")
    here = hypervisor.create_transient(LOCAL_URI, guest_spec(panel_test_guest, vnc=True))
    there = None
    try:
        port = here.graphics[0].port
        # The VM on b listens on the very port this machine's VM holds here.
        there = hypervisor.create_transient(
            host_b.uri, guest_spec(panel_test_guest, vnc=True, vnc_port=port)
        )
        assert there.graphics[0].port == port
        vm_b, vm_local = sync_domain(host_b, there), sync_domain(local_host, here)

        status, body = api(stack, admin, "POST", f"vms/{vm_b.pk}/console/", {"type": "serial"})
        assert status == 200, body
        with connect(body["url"], additional_headers={"Origin": stack.url}, open_timeout=10) as ws:
            ws.send(b"\r")
            ws_read_until(ws, b"guest# ", 60)
            ws.send(b"echo from-b-$((6*7))\r")
            assert b"from-b-42" in ws_read_until(ws, b"from-b-42", 15)

        for vm, name in ((vm_b, there.name), (vm_local, here.name)):
            status, body = api(stack, admin, "POST", f"vms/{vm.pk}/console/", {"type": "vnc"})
            assert status == 200, body
            assert rfb_name(body["url"]) == f"QEMU ({name})".encode()

        # A viewer watches b's display through the panel's view-only proxy, tunnelled too.
        project = services.create_project(name="alpha", actor=Actor(admin))
        viewer = django_user_model.objects.create_user("view", "", "view-pass-8Kq")
        services.add_member(project, user=viewer, role="viewer", actor=Actor(admin))
        vm_b.project = project
        vm_b.save()
        status, body = api(stack, viewer, "POST", f"vms/{vm_b.pk}/console/", {"type": "vnc"})
        assert status == 200 and "/vnc-view/" in body["url"], body
        assert rfb_name(body["url"], origin=stack.url) == f"QEMU ({there.name})".encode()
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, here.uuid)
        if there is not None:
            with contextlib.suppress(hypervisor.HypervisorError):
                hypervisor.destroy_domain(host_b.uri, there.uuid)
