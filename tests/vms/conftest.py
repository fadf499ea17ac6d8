"""People, a host and real guests for the VM tests.

Personas, built through the services an admin uses (as tests/teams does):

    admin     superuser, in no project
    alpha     operator, member (owns the VMs made here), member2 (a member who
              owns nothing), viewer
    beta      outsider (a member there)

``local_host`` is the real local libvirtd as a Host row; ``make_vm()`` defines
the tiny guest there (persistent, named ``paneltest-…``), mirrors it with
``sync_domain`` and gives it to alpha/member; every domain and scratch pool it
made is removed afterwards. ``api_for`` / ``client_for`` are API (token) and
page (session) clients of a persona; "anonymous" has no credentials.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from lxml import html as lxml_html
from rest_framework.test import APIClient

from panel import hypervisor, services
from panel.actors import Actor
from panel.choices import HostState, ProjectRole
from panel.models import Host, Project
from tests.conftest import LOCAL_URI, guest_spec
from vms import services as vm_services
from vms.models import VirtualMachine

# Playwright's sync API runs an event loop in the test thread; without this
# Django refuses ORM calls there (the same switch tests/e2e/conftest.py sets).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PASSWORDS = {
    "operator": "Lantern-ridge-41q",
    "member": "Copper-kettle-77z",
    "member2": "Granite-willow-35p",
    "viewer": "Quiet-harbor-23m",
    "outsider": "Velvet-canyon-58t",
}
IMAGES = Path("/var/lib/libvirt/images")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Cheap hashes: no test here logs in with a password through the stack's processes
    (browsers and websockets get a session cookie made with force_login)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- people -----------------------------------------------------------------------------


@dataclass
class People:
    users: dict[str, Any]
    alpha: Project
    beta: Project

    def __getitem__(self, persona: str) -> Any:
        return self.users[persona]


@pytest.fixture
def people(db) -> People:
    User = get_user_model()
    admin = User.objects.create_superuser("admin", "admin@example.test", "admin-pass-9d3k")
    users: dict[str, Any] = {"admin": admin}
    for name, password in PASSWORDS.items():
        users[name] = services.create_user(
            username=name, password=password, email=f"{name}@example.test", actor=Actor(admin)
        )
    alpha = services.create_project(name="alpha", actor=Actor(admin))
    beta = services.create_project(name="beta", actor=Actor(admin))
    for name, role in (
        ("operator", ProjectRole.OPERATOR),
        ("member", ProjectRole.MEMBER),
        ("member2", ProjectRole.MEMBER),
        ("viewer", ProjectRole.VIEWER),
    ):
        services.add_member(alpha, user=users[name], role=role, actor=Actor(admin))
    services.add_member(beta, user=users["outsider"], role=ProjectRole.MEMBER, actor=Actor(admin))
    return People(users=users, alpha=alpha, beta=beta)


@pytest.fixture
def admin(people):
    return people["admin"]


@pytest.fixture
def member(people):
    return people["member"]


@pytest.fixture
def alpha(people) -> Project:
    return people.alpha


@pytest.fixture
def beta(people) -> Project:
    return people.beta


@pytest.fixture
def api_for(people) -> Callable[[str], APIClient]:
    """api_for("member"): an API client sending that persona's token."""

    def make(persona: str) -> APIClient:
        client = APIClient()
        if persona != "anonymous":
            user = people[persona]
            token = services.create_token(user, actor=Actor(user))
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def client_for(people) -> Callable[[str], Client]:
    """client_for("member"): a page client logged in as that persona."""

    def make(persona: str) -> Client:
        client = Client()
        if persona != "anonymous":
            client.force_login(people[persona])
        return client

    return make


# --- reading pages ------------------------------------------------------------------------


def page_text(response) -> str:
    """The page as a user reads it: tags gone, whitespace collapsed."""
    doc = lxml_html.fromstring(response.content.decode())
    return re.sub(r"\s+", " ", doc.text_content().replace("\xa0", " "))


def texts(response, xpath: str) -> list[str]:
    """The text of each element the XPath finds, whitespace collapsed."""
    doc = lxml_html.fromstring(response.content.decode())
    return [
        re.sub(r"\s+", " ", el.text_content().replace("\xa0", " ")).strip()
        for el in doc.xpath(xpath)
    ]


def alerts(response) -> list[str]:
    return texts(response, "//div[@role='alert']")


def queued_tasks(callbacks) -> list[tuple[str, tuple]]:
    """(task name, args) of each Celery task a block queued with delay_on_commit."""
    return [
        (c.func.__self__.name, c.args)
        for c in callbacks
        if isinstance(c, functools.partial) and hasattr(c.func, "__self__")
    ]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, step: float = 0.05) -> bool:
    """Whether predicate() came true within timeout: a generous deadline, not a speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


# --- the real host, guests and pools ----------------------------------------------------------


@pytest.fixture
def local_host(db) -> Host:
    return Host.objects.create(name="local", uri=LOCAL_URI, state=HostState.UP, domain_type="qemu")


@pytest.fixture
def define_guest(panel_test_guest) -> Iterator[Callable[..., hypervisor.DomainInfo]]:
    """define_guest(**spec overrides): the tiny guest defined (shut off) on the real host."""
    made: list[str] = []

    def define(**overrides: Any) -> hypervisor.DomainInfo:
        info = hypervisor.define_domain(LOCAL_URI, guest_spec(panel_test_guest, **overrides))
        made.append(info.uuid)
        return info

    yield define
    for uuid in made:
        with contextlib.suppress(hypervisor.NotFound):
            hypervisor.undefine_domain(LOCAL_URI, uuid)


@pytest.fixture
def make_vm(define_guest, local_host, people) -> Callable[..., VirtualMachine]:
    """make_vm(running=False, **spec overrides): a defined tiny guest as alpha's VM, owned by member."""

    def make(*, running: bool = False, **overrides: Any) -> VirtualMachine:
        info = define_guest(**overrides)
        if running:
            info = hypervisor.start_domain(LOCAL_URI, info.uuid)
        vm = vm_services.sync_domain(local_host, info)
        VirtualMachine.objects.filter(pk=vm.pk).update(project=people.alpha, owner=people["member"])
        return VirtualMachine.objects.select_related("host", "project", "owner").get(pk=vm.pk)

    return make


def virsh(*args: str) -> str:
    result = subprocess.run(
        ["virsh", "-c", LOCAL_URI, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"virsh {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@dataclass
class ScratchPool:
    """A transient dir pool under /var/lib/libvirt/images, made with virsh."""

    name: str
    target: Path
    volumes: list[str] = field(default_factory=list)

    def add_volume(self, name: str, size: str = "16M") -> str:
        virsh("vol-create-as", self.name, name, size, "--format", "qcow2")
        self.volumes.append(name)
        return str(self.target / name)

    def volume_names(self) -> set[str]:
        virsh("pool-refresh", self.name)
        lines = virsh("vol-list", self.name).splitlines()[2:]
        return {line.split()[0] for line in lines if line.strip()}


@pytest.fixture
def scratch_pool() -> Iterator[ScratchPool]:
    name = f"paneltest-{uuidlib.uuid4().hex[:8]}"
    target = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=IMAGES))
    target.chmod(0o755)  # qemu runs as libvirt-qemu and must reach the volumes
    virsh("pool-create-as", name, "dir", "--target", str(target))
    try:
        yield ScratchPool(name=name, target=target)
    finally:
        with contextlib.suppress(AssertionError):
            virsh("pool-destroy", name)
        shutil.rmtree(target, ignore_errors=True)


# --- the host watcher in a thread -------------------------------------------------------------


@pytest.fixture
def watcher(transactional_db, local_host) -> Iterator[Host]:
    """panel.watcher.HostWatcher following the local host, as `manage.py watch_hosts` would."""
    from panel.watcher import HostWatcher

    w = HostWatcher(rescan_seconds=1.0)

    def run() -> None:
        try:
            w.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="test-watcher", daemon=True)
    thread.start()
    assert wait_for(lambda: local_host.pk in w.watches), "the watcher did not subscribe"
    yield local_host
    w.stop()
    thread.join(30)
    assert not thread.is_alive()


# --- headless Chromium: the shared `page` fixture (tests/browser.py) ---------------------


@pytest.fixture
def browser_page(page):
    return page
