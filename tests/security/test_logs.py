"""No secret in any log line: on the running stack (the web server and the Celery worker logging
at DEBUG), a user logs in, opens the serial console and the VNC console of a VM with a
VNC password, reads pages and the API with a token (and the worker reads the VM's details); then the logs are
searched for every secret that went by."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
import requests
from django.conf import settings
from websockets.sync.client import connect

from panel import hypervisor, services
from panel.actors import Actor
from panel.models import Host
from tests.conftest import ADMIN_PASSWORD, LOCAL_URI, guest_spec
from vms import services as vm_services

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(120)]

VNC_PASSWORD = "Lq4vXe9s"


@pytest.fixture
def fast_password_hashing():
    """The real hashers here: the stack's processes check the password of this login."""


@pytest.fixture
def vm(transactional_db, panel_test_guest, admin_user):
    host = Host.objects.create(name="local", uri=LOCAL_URI, state="up", domain_type="qemu")
    info = hypervisor.define_domain(LOCAL_URI, guest_spec(panel_test_guest, vnc=True))
    try:
        vm = vm_services.sync_domain(host, info)
        vm.project = services.create_project(name="alpha", actor=Actor(admin_user))
        vm.save()
        vm_services.set_vnc_password(vm, VNC_PASSWORD, actor=Actor(admin_user))
        yield vm_services.sync_domain(host, hypervisor.start_domain(LOCAL_URI, info.uuid))
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, info.uuid)
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(LOCAL_URI, info.uuid)


def log_text(stack) -> str:
    return "".join(
        (stack.logs / name).read_text(errors="replace")
        for name in ("web.log", "worker-quick.log", "worker-long.log")
    )


def test_it_writes_no_secret_to_any_log(stack, vm):
    web = requests.Session()
    web.get(f"{stack.url}/login/", timeout=10)
    csrf = web.cookies["csrftoken"]
    login = web.post(
        f"{stack.url}/login/",
        {"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{stack.url}/login/"},
        timeout=10,
    )
    assert login.url.rstrip("/") == stack.url, login.text[:500]
    csrf = web.cookies["csrftoken"]
    web.post(
        f"{stack.url}/account/token/",
        {"csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{stack.url}/account/"},
        timeout=10,
    )
    token = requests.post(
        f"{stack.url}/api/v1/auth/token/",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        timeout=10,
    ).json()["token"]
    api = {"Authorization": f"Token {token}"}

    tickets = {}
    for kind in ("serial", "vnc"):
        answer = requests.post(
            f"{stack.url}/api/v1/vms/{vm.pk}/console/", json={"type": kind}, headers=api, timeout=10
        )
        assert answer.status_code == 200, answer.text
        tickets[kind] = answer.json()
    assert tickets["vnc"]["password"] == VNC_PASSWORD  # for noVNC, and nowhere else
    with connect(tickets["serial"]["url"], additional_headers={"Origin": stack.url}) as ws:
        ws.send(b"\r")
        assert ws.recv(timeout=10)
    with connect(tickets["vnc"]["url"], additional_headers={"Origin": stack.url}) as ws:
        assert ws.recv(timeout=10).startswith(b"RFB ")  # websockify reached the VNC display
    for path in (f"/vms/{vm.pk}/", f"/vms/{vm.pk}/xml/", "/api/v1/vms/", f"/api/v1/vms/{vm.pk}/"):
        assert web.get(stack.url + path, headers=api if "api" in path else {}, timeout=10).ok
    # The VM page asked the worker to read the VM's details from the host: a task ran.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        vm.refresh_from_db()
        if vm.details.get("read_at"):
            break
        time.sleep(0.2)
    assert vm.details.get("read_at"), "the worker never read the VM's details"
    time.sleep(0.5)  # the last lines reach the log files

    secrets = {
        "VNC password": VNC_PASSWORD,
        "serial ticket": tickets["serial"]["ticket"],
        "VNC ticket": tickets["vnc"]["ticket"],
        "session id": web.cookies["sessionid"],
        "CSRF token": csrf,
        "API token": token,
        "admin password": ADMIN_PASSWORD,
        "SECRET_KEY": settings.SECRET_KEY,
    }
    logs = log_text(stack)
    found = {what: value for what, value in secrets.items() if value in logs}

    assert f"/api/v1/vms/{vm.pk}/console/" in logs  # the web server's access log
    assert "vms.refresh_details" in logs  # the worker's lines
    assert found == {}, json.dumps(found)
