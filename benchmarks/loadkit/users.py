"""The virtual users: what each one does next (page views, API reads and, for admins
and operators, power actions and snapshots, drawn by weight) as an Action, what it keeps
from the answers (the VMs it saw, its jobs), and its browser and websockets."""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .client import Http
from .events import Sock
from .limits import ACTS, READS
from .world import UserSpec, World

VM_ROW = re.compile(rb'<tr data-vm="([0-9a-f-]{36})"')


@dataclass
class Action:
    kind: str
    category: str  # page, api, action
    method: str
    path: str
    body: Any = None
    expected: tuple[int, ...] = ()  # 4xx answers that are part of the game
    cause: tuple[str, str] | None = None  # (VM, state it should reach)
    after: Callable[[int, bytes], None] | None = None


class VirtualUser:
    def __init__(self, spec: UserSpec, port: int, world: World, rng: random.Random) -> None:
        self.spec = spec
        self.http = Http(port)
        self.world = world
        self.rng = rng
        self.visible = world.visible(spec)
        self.seen: list[str] = []  # VMs on the last list the user looked at
        self.jobs: deque[int] = deque(maxlen=5)
        self.socks: list[Sock] = []
        self.weights = dict(READS) if spec.role == "viewer" else {**READS, **ACTS}
        self.seq = 0

    def vm_list_path(self) -> str:
        rng, params = self.rng, {}
        r = rng.random()
        if r < 0.35:
            params["page"] = str(rng.randint(1, max(1, len(self.visible) // 50)))
        elif r < 0.60:
            params["q"] = self.fragment()
        elif r < 0.75:
            params["state"] = rng.choice(("running", "shutoff", "paused"))
            params["page"] = str(rng.randint(1, 3))
        elif r < 0.90:
            params["host"] = str(rng.choice(self.world.hosts))
        else:
            projects = self.world.projects if self.spec.role == "admin" else self.spec.projects
            params["project"] = str(rng.choice(sorted(projects)))
        if rng.random() < 0.3:
            params["ordering"] = rng.choice(
                ("-name", "state", "-vcpus", "memory_mib", "host__name")
            )
        return "/vms/?" + urlencode(params)

    def fragment(self) -> str:
        """Part of a VM name: 'vm0012' matches ten VMs, 'vm001' a hundred."""
        n = self.rng.randrange(len(self.world.vms))
        return f"vm{n:05d}"[: self.rng.choice((5, 6, 6, 7))]

    def some_vm(self) -> str:
        if self.seen and self.rng.random() < 0.7:
            return self.rng.choice(self.seen)
        return self.rng.choice(self.visible)

    def saw_page(self, status: int, body: bytes) -> None:
        if status == 200:
            self.seen = [m.decode() for m in VM_ROW.findall(body)] or self.seen

    def saw_api(self, status: int, body: bytes) -> None:
        if status == 200:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.seen = [r["id"] for r in json.loads(body)["results"]] or self.seen

    def next_action(self) -> Action:
        kind = self.rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
        return self.action(kind)

    def action(self, kind: str) -> Action:
        rng = self.rng
        self.seq += 1
        bust = f"?_={self.spec.pk}-{self.seq}"  # no cache keyed by URL could answer
        if kind == "page vm list":
            return Action(kind, "page", "GET", self.vm_list_path(), after=self.saw_page)
        if kind == "page vm":
            return Action(kind, "page", "GET", f"/vms/{self.some_vm()}/")
        if kind == "page dashboard":
            return Action(kind, "page", "GET", f"/{bust}")
        if kind == "page host":
            return Action(kind, "page", "GET", f"/hosts/{rng.choice(self.world.hosts)}/{bust}")
        if kind == "page jobs":
            return Action(kind, "page", "GET", f"/jobs/{bust}")
        if kind == "api vm search":
            params = {"search": self.fragment(), "page_size": rng.choice(("20", "50"))}
            if rng.random() < 0.3:
                params["state"] = rng.choice(("running", "shutoff"))
            if rng.random() < 0.2:
                params["ordering"] = rng.choice(("-name", "state", "memory_mib"))
            path = "/api/v1/vms/?" + urlencode(params)
            return Action(kind, "api", "GET", path, after=self.saw_api)
        if kind == "api vm":
            return Action(kind, "api", "GET", f"/api/v1/vms/{self.some_vm()}/")
        if kind == "api jobs":
            if self.jobs and rng.random() < 0.6:
                return Action(kind, "api", "GET", f"/api/v1/jobs/{rng.choice(self.jobs)}/")
            return Action(kind, "api", "GET", "/api/v1/jobs/?page_size=20&ordering=-created")
        if kind == "act power":
            return self.power()
        return self.snapshot()

    def power(self) -> Action:
        vm = self.world.vm_to_act_on(self.spec, self.rng)
        # Shut down (a job) always passes an ACPI or agent flag, which the test driver
        # refuses ("unsupported flags"): the job-making power action here is save (a managed
        # save, a long job), which stops the VM as shutdown would.
        if vm.state == "running" and self.rng.random() < 0.3:
            verb, target = "save", "shutoff"
        elif vm.state in ("running", "paused"):
            verb, target = "force-off", "shutoff"
        else:
            verb, target = "start", "running"

        def after(status: int, body: bytes) -> None:
            if status in (200, 202):
                vm.state = target
            if status == 202:
                with contextlib.suppress(ValueError, KeyError):
                    self.jobs.append(int(json.loads(body)["job"]))

        return Action(
            f"act {verb}",
            "action",
            "POST",
            f"/api/v1/vms/{vm.uuid}/{verb}/",
            body={},
            expected=(409,),
            cause=(vm.uuid, target),
            after=after,
        )

    def snapshot(self) -> Action:
        vm = self.world.vm_to_act_on(self.spec, self.rng)

        def after(status: int, body: bytes) -> None:
            if status == 202:
                with contextlib.suppress(ValueError, KeyError):
                    self.jobs.append(int(json.loads(body)["job"]))

        return Action(
            "act snapshot",
            "action",
            "POST",
            f"/api/v1/vms/{vm.uuid}/snapshots/",
            body={"name": f"load-{self.spec.pk}-{self.seq}"},
            expected=(409,),
            after=after,
        )
