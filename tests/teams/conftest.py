"""Two teams and everyone around them, built through the services a real admin uses.

Project "alpha" (quota: 3 VMs, 4 vCPUs, 2048 MiB, 10 GiB) has an ``operator``,
a ``member`` and a ``viewer``; project "beta" has the ``outsider`` (a member
there). ``admin`` is a superuser; ``newcomer`` is in no project yet.

Each project may use only its own host, pool and network, so every name below
that contains "alpha" belongs to alpha and every one containing "beta" to beta:
a page or API answer shown to someone of the other team must not contain it.

    alpha: host kvm-alpha (test:///alpha-only), VMs alpha-web (owner member,
           1 vCPU, 512 MiB) and alpha-db (owner operator, 2 vCPUs, 1024 MiB),
           pool alpha-pool with volume alpha-disk (2 GiB), network alpha-net,
           job "vm:alpha-web" started by member, audit row member vm.start alpha-web
    beta:  host kvm-beta (test:///default), VM beta-app (owner outsider,
           1 vCPU, 256 MiB), pool beta-pool with volume beta-disk (1 GiB),
           network beta-net, job "vm:beta-app" started by outsider, audit row
           outsider vm.start beta-app
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.client import ClientHandler
from lxml import html as lxml_html

from networking.models import Network
from panel import audit, jobs, services, throttle
from panel.actors import Actor
from panel.choices import ProjectRole
from panel.models import AuditEvent, Host, Job, Project
from storage.models import StoragePool, Volume
from vms.models import VirtualMachine

GIB = 1024**3

PASSWORDS = {
    "admin": "admin-pass-9d3k",
    "operator": "Lantern-ridge-41q",
    "member": "Copper-kettle-77z",
    "viewer": "Quiet-harbor-23m",
    "outsider": "Velvet-canyon-58t",
    "newcomer": "Amber-forest-16w",
}
PERSONAS = ("admin", "operator", "member", "viewer", "outsider")
ALPHA_QUOTA = {"vms": 3, "vcpus": 4, "memory_mib": 2048, "disk_gib": 10}
# The project each persona belongs to ("home"); the admin is in none but is
# shown alpha's objects as "own" and beta's as "other".
HOME = {
    "admin": "alpha",
    "operator": "alpha",
    "member": "alpha",
    "viewer": "alpha",
    "outsider": "beta",
}
OTHER = {"alpha": "beta", "beta": "alpha"}


@dataclass
class Team:
    """One project and the inventory that belongs to it."""

    project: Project
    host: Host
    vms: list[VirtualMachine]
    pool: StoragePool
    volume: Volume
    network: Network
    job: Job
    event: AuditEvent
    # The member the removal actions target (alpha: viewer; beta: outsider).
    removable: Any = None


@dataclass
class World:
    users: dict[str, Any]
    teams: dict[str, Team] = field(default_factory=dict)

    def team_of(self, persona: str, side: str = "own") -> Team:
        home = HOME[persona]
        return self.teams[home if side == "own" else OTHER[home]]


@pytest.fixture(autouse=True)
def fast_password_hashing(request, settings):
    """Hash test passwords cheaply; browser tests log in through the stack's own
    processes, which keep the real hashers, so they keep them too."""
    if request.node.get_closest_marker("browser") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_vm(name: str, host: Host, project: Project, owner: Any, vcpus: int, memory_mib: int):
    """A running VM row, as a host sync would have left it."""
    return VirtualMachine.objects.create(
        id=uuid.uuid4(),
        name=name,
        host=host,
        project=project,
        owner=owner,
        vcpus=vcpus,
        memory_mib=memory_mib,
        state="running",
        domain_type="qemu",
    )


def _team(
    name: str,
    *,
    admin: Any,
    uri: str,
    quota: dict[str, int] | None,
    members: dict[Any, str],
    vms: list[tuple[str, Any, int, int]],
    disk_bytes: int,
    job_user: Any,
    removable: Any,
) -> Team:
    project = services.create_project(name=name, quota=quota, actor=Actor(admin))
    for user, role in members.items():
        services.add_member(project, user=user, role=role, actor=Actor(admin))
    # Rows only: the panel has never reached these hosts, so it starts no work on them.
    host = Host.objects.create(name=f"kvm-{name}", uri=uri, domain_type="qemu")
    pool = StoragePool.objects.create(
        host=host,
        name=f"{name}-pool",
        type="dir",
        state="running",
        target_path=f"/var/lib/libvirt/{name}",
        capacity=100 * GIB,
        allocation=10 * GIB,
        available=90 * GIB,
    )
    volume = Volume.objects.create(
        pool=pool,
        project=project,
        owner=job_user,
        name=f"{name}-disk",
        path=f"/var/lib/libvirt/{name}/{name}-disk.qcow2",
        format="qcow2",
        capacity=disk_bytes,
    )
    network = Network.objects.create(host=host, name=f"{name}-net", mode="nat", active=True)
    services.update_project(
        project,
        allowed_hosts=[host],
        allowed_pools=[pool],
        allowed_networks=[network],
        actor=Actor(admin),
    )
    machines = [make_vm(n, host, project, owner, c, m) for n, owner, c, m in vms]
    first = machines[0]
    job = jobs.create_job(
        "vm.start", target=f"vm:{first.name}", actor=Actor(job_user), host=host, project=project
    )
    event = audit.record(Actor(job_user), "vm.start", first, detail=f"job #{job.pk}")
    return Team(project, host, machines, pool, volume, network, job, event, removable)


@pytest.fixture
def world(db) -> World:
    User = get_user_model()
    admin = User.objects.create_superuser("admin", "admin@example.test", PASSWORDS["admin"])
    users = {"admin": admin}
    for name in ("operator", "member", "viewer", "outsider", "newcomer"):
        users[name] = services.create_user(
            username=name,
            password=PASSWORDS[name],
            email=f"{name}@example.test",
            actor=Actor(admin),
        )
    w = World(users=users)
    w.teams["alpha"] = _team(
        "alpha",
        admin=admin,
        uri="test:///alpha-only",
        quota=ALPHA_QUOTA,
        members={
            users["operator"]: ProjectRole.OPERATOR,
            users["member"]: ProjectRole.MEMBER,
            users["viewer"]: ProjectRole.VIEWER,
        },
        vms=[
            ("alpha-web", users["member"], 1, 512),
            ("alpha-db", users["operator"], 2, 1024),
        ],
        disk_bytes=2 * GIB,
        job_user=users["member"],
        removable=users["viewer"],
    )
    w.teams["beta"] = _team(
        "beta",
        admin=admin,
        uri="test:///default",
        quota=None,
        members={users["outsider"]: ProjectRole.MEMBER},
        vms=[("beta-app", users["outsider"], 1, 256)],
        disk_bytes=1 * GIB,
        job_user=users["outsider"],
        removable=users["outsider"],
    )
    return w


@pytest.fixture
def admin(world):
    return world.users["admin"]


@pytest.fixture
def operator(world):
    return world.users["operator"]


@pytest.fixture
def member(world):
    return world.users["member"]


@pytest.fixture
def viewer(world):
    return world.users["viewer"]


@pytest.fixture
def outsider(world):
    return world.users["outsider"]


@pytest.fixture
def newcomer(world):
    return world.users["newcomer"]


@pytest.fixture
def alpha(world) -> Project:
    return world.teams["alpha"].project


@pytest.fixture
def beta(world) -> Project:
    return world.teams["beta"].project


@pytest.fixture(scope="session")
def client_handler() -> ClientHandler:
    """One request handler for all the test clients here: building the middleware
    chain (WhiteNoise indexes every static file) costs more than most requests."""
    return ClientHandler(enforce_csrf_checks=False)


@pytest.fixture
def new_client(client_handler):
    """new_client(**defaults): a fresh test client (no cookies) on the shared handler."""

    def make(**defaults: Any) -> Client:
        client = Client(**defaults)
        client.handler = client_handler
        return client

    return make


@pytest.fixture
def client_for(world, new_client):
    """client_for("member"): a Django test client logged in as that persona
    ("anonymous": not logged in)."""

    def make(persona: str) -> Client:
        client = new_client()
        if persona != "anonymous":
            client.force_login(world.users[persona])
        return client

    return make


@pytest.fixture
def token_for(world):
    """token_for("member"): a fresh API token key of that persona, made by the service."""

    def make(persona: str) -> str:
        user = world.users[persona]
        return services.create_token(user, actor=Actor(user)).key

    return make


@pytest.fixture
def api_for(token_for, new_client):
    """api_for("member"): a test client sending that persona's API token, and its
    password for the actions that ask for it again (panel.identity.reauth)
    ("anonymous": no credentials)."""

    def make(persona: str) -> Client:
        if persona == "anonymous":
            return new_client()
        return new_client(
            headers={
                "Authorization": f"Token {token_for(persona)}",
                "X-Panel-Password": PASSWORDS[persona],
            }
        )

    return make


@pytest.fixture
def address():
    """A client address of its own (from TEST-NET-3) for a test that fails logins;
    its failure counts are wiped afterwards."""
    ip = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    yield ip
    for name in (*PASSWORDS, "nobody"):
        throttle.reset(name, ip)


def page_text(response) -> str:
    """The page as a user reads it: tags gone, entities decoded, whitespace collapsed."""
    doc = lxml_html.fromstring(response.content.decode())
    return re.sub(r"\s+", " ", doc.text_content().replace("\xa0", " "))


def texts(response, xpath: str) -> list[str]:
    """The text of each element the XPath finds, whitespace collapsed."""
    doc = lxml_html.fromstring(response.content.decode())
    return [
        re.sub(r"\s+", " ", el.text_content().replace("\xa0", " ")).strip()
        for el in doc.xpath(xpath)
    ]
