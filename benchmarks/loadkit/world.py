"""The world of the load run: simulated hosts with their VMs, the projects sharing them,
the users (admins, operators, viewers) and who may see what; the fifth of the VMs left to
the event sources, and the fresh VMs the users act on once each."""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import benchkit as kit
from simhosts import write_nodes

from .limits import PASSWORD


@dataclass
class VM:
    uuid: str
    name: str
    host: int
    project: int
    state: str


@dataclass
class UserSpec:
    pk: int
    username: str
    role: str  # admin, operator, viewer
    projects: frozenset[int]

    def sees(self, vm: VM) -> bool:
        return self.role == "admin" or vm.project in self.projects


@dataclass
class World:
    hosts: list[int]
    uris: dict[int, str]
    projects: list[int]
    vms: dict[str, VM]
    users: list[UserSpec]
    by_project: dict[int, list[str]]
    fresh: dict[int, deque[str]]  # per project: VMs no one acted on yet
    source_pool: set[str]
    reused: int = 0

    def visible(self, user: UserSpec) -> list[str]:
        if user.role == "admin":
            return [u for p in self.projects for u in self.by_project[p]]
        return [u for p in user.projects for u in self.by_project[p]]

    def vm_to_act_on(self, user: UserSpec, rng: random.Random) -> VM:
        project = rng.choice(self.projects if user.role == "admin" else sorted(user.projects))
        queue = self.fresh[project]
        if queue:
            return self.vms[queue.popleft()]
        self.reused += 1
        mine = [u for u in self.by_project[project] if u not in self.source_pool]
        return self.vms[rng.choice(mine)]


def build_world(args: argparse.Namespace, tmp: Path) -> World:
    """The hosts, projects, users and VMs of the run, recorded as the watcher would have."""
    hosts = make_hosts(args, tmp)
    projects = make_projects(args)
    vms, by_project = spread_vms(projects)
    users = make_users(args, projects)
    # A fifth of the VMs (running, shut off or paused) belong to the event source; the users
    # act on the rest, each VM once while fresh ones last.
    rng = random.Random(20261201)
    uuids = sorted(vms)
    rng.shuffle(uuids)
    source_pool = set(uuids[: max(1, len(uuids) // 5)])
    fresh: dict[int, deque[str]] = {p: deque() for p in projects}
    for u in uuids:
        if u not in source_pool:
            fresh[vms[u].project].append(u)
    world = World(
        hosts=[h.pk for h in hosts],
        uris={h.pk: h.uri for h in hosts},
        projects=projects,
        vms=vms,
        users=users,
        by_project=by_project,
        fresh=fresh,
        source_pool=source_pool,
    )
    counts = Counter(u.role for u in users)
    kit.say(
        f"  {len(projects)} projects; {len(users)} users: {counts['admin']} admins, "
        f"{counts['operator']} operators, {counts['viewer']} viewers (one project each); "
        f"{len(source_pool)} VMs for the event source, {len(vms) - len(source_pool)} for the users"
    )
    return world


def make_hosts(args: argparse.Namespace, tmp: Path) -> list:
    """The simulated hosts' node files and Host rows, their VMs synced."""
    from panel.choices import HostState
    from panel.models import Host
    from panel.services.hosts import reconcile_host

    with kit.timed() as t:
        paths = write_nodes(tmp / "nodes", args.vms, args.hosts)
        hosts = [
            Host.objects.create(name=f"sim-{n + 1:02d}", uri=f"test://{p}", state=HostState.UP)
            for n, p in enumerate(paths)
        ]
        for host in hosts:
            reconcile_host(host, checks=False)
    kit.say(
        f"  {args.hosts} simulated hosts with {args.vms} VMs written and synced in {t[0]:.1f} s"
    )
    return hosts


def make_projects(args: argparse.Namespace) -> list[int]:
    from panel.models import Project

    return [
        Project.objects.create(name=f"team-{n + 1}", description="a team of the load run").pk
        for n in range(args.projects)
    ]


def spread_vms(projects: list[int]) -> tuple[dict[str, VM], dict[int, list[str]]]:
    """Every VM (by name) to the next project in turn: the VMs by id, and each project's."""
    from vms.models import VirtualMachine

    rows = list(
        VirtualMachine.objects.order_by("name").values_list("pk", "name", "host_id", "state")
    )
    vms: dict[str, VM] = {}
    by_project: dict[int, list[str]] = {p: [] for p in projects}
    for n, (pk, name, host_id, state) in enumerate(rows):
        project = projects[n % len(projects)]
        vms[str(pk)] = VM(str(pk), name, host_id, project, state)
        by_project[project].append(str(pk))
    for project_id, uuids in by_project.items():
        for i in range(0, len(uuids), 500):
            VirtualMachine.objects.filter(pk__in=uuids[i : i + 500]).update(project_id=project_id)
    return vms, by_project


def make_users(args: argparse.Namespace, projects: list[int]) -> list[UserSpec]:
    """10% admins, 40% operators, 50% viewers; each non-admin in one project."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from panel.choices import ProjectRole
    from panel.models import Membership

    # One password hash for all: hashing 200 passwords would take a minute of CPU for nothing.
    User = get_user_model()
    hashed = make_password(PASSWORD)
    n_admins = max(1, round(args.users * 0.1))
    n_operators = max(1, round(args.users * 0.4))
    roles = ["admin"] * n_admins + ["operator"] * n_operators
    roles += ["viewer"] * (args.users - len(roles))
    User.objects.bulk_create(
        [
            User(
                username=f"load-{role}-{n:03d}",
                email=f"load-{n}@load.test",
                password=hashed,
                is_superuser=role == "admin",
                is_staff=role == "admin",
            )
            for n, role in enumerate(roles)
        ]
    )
    users_by_name = {u.username: u for u in User.objects.filter(username__startswith="load-")}
    users: list[UserSpec] = []
    memberships = []
    for n, role in enumerate(roles):
        user = users_by_name[f"load-{role}-{n:03d}"]
        mine = frozenset() if role == "admin" else frozenset({projects[n % len(projects)]})
        users.append(UserSpec(user.pk, user.username, role, mine))
        for pid in mine:
            pr = ProjectRole.OPERATOR if role == "operator" else ProjectRole.VIEWER
            memberships.append(Membership(user=user, project_id=pid, role=pr))
    Membership.objects.bulk_create(memberships)
    return users


def write_source_pools(world: World, sources: int, tmp: Path) -> list[Path]:
    """One pool file per source process, the hosts shared out between them (as the
    watchers share hosts out by leases)."""
    pool_files = []
    for n in range(sources):
        pool = [
            [u, vm.name, vm.host, world.uris[vm.host], vm.state]
            for u in sorted(world.source_pool)
            if (vm := world.vms[u]).host % sources == n
        ]
        if pool:
            pool_files.append(tmp / f"event-source-{n}.json")
            pool_files[-1].write_text(json.dumps(pool))
    return pool_files
