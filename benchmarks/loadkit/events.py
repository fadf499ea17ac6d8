"""Event delivery: the causes of VM changes (an event source's change, a user's power
action), the websockets that should each show it (Sock), and the time until each does
or counts as missed."""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from typing import Any

from .limits import EVENT_TIMEOUT_S
from .steps import Clock, Step
from .world import UserSpec, World


@dataclass(eq=False)
class Sock:
    user: UserSpec
    path: str
    host: int | None  # a host's socket: every VM on that host
    vms: frozenset[str] = frozenset()  # a VM list's socket: the VMs of its rows
    ws: Any = None
    open: bool = False


@dataclass(eq=False)
class Cause:
    t: float
    step: Step
    expected: set[Sock]
    cancelled: bool = False


class Events:
    """Causes of VM changes and their vm.update messages on the open websockets."""

    def __init__(self, world: World, clock: Clock) -> None:
        self.world = world
        self.clock = clock
        self.by_host: dict[int, set[Sock]] = defaultdict(set)
        self.by_vm: dict[str, set[Sock]] = defaultdict(set)
        self.pending: dict[tuple[str, str], deque[Cause]] = defaultdict(deque)
        self.early: dict[tuple[str, str], list[tuple[Sock, float]]] = defaultdict(list)
        self.unmatched = 0
        self.other_messages = 0
        self.source_errors: Counter[str] = Counter()
        self.source_changes = 0

    def add(self, sock: Sock) -> None:
        if sock.host is not None:
            self.by_host[sock.host].add(sock)
        for uuid in sock.vms:
            self.by_vm[uuid].add(sock)

    def drop(self, sock: Sock) -> None:
        if sock.host is not None:
            self.by_host[sock.host].discard(sock)
        for uuid in sock.vms:
            self.by_vm[uuid].discard(sock)
        for queue in self.pending.values():
            for cause in queue:
                cause.expected.discard(sock)

    def expect(self, uuid: str, state: str, t: float) -> Cause | None:
        vm = self.world.vms.get(uuid)
        if vm is None:
            return None
        step = self.clock.at(t)
        listening = self.by_host[vm.host] | self.by_vm[uuid]
        cause = Cause(t, step, {s for s in listening if s.user.sees(vm)})
        step.causes += 1
        for sock, at in self.early.pop((uuid, state), []):
            if sock in cause.expected and at >= t:
                cause.expected.discard(sock)
                step.events.append(at - t)
                self.unmatched -= 1
        if cause.expected:
            self.pending[(uuid, state)].append(cause)
        return cause

    def received(self, sock: Sock, uuid: str, state: str, now: float) -> None:
        queue = self.pending.get((uuid, state))
        if queue:
            for cause in queue:
                if not cause.cancelled and sock in cause.expected:
                    cause.expected.discard(sock)
                    cause.step.events.append(now - cause.t)
                    return
        self.unmatched += 1
        self.early[(uuid, state)].append((sock, now))

    def sweep(self, now: float, final: bool = False) -> None:
        for key in list(self.pending):
            queue = self.pending[key]
            kept: deque[Cause] = deque()
            for cause in queue:
                if cause.cancelled or not cause.expected:
                    continue
                if final or now - cause.t > EVENT_TIMEOUT_S:
                    cause.step.missed += len(cause.expected)
                    cause.step.events.extend([math.inf] * len(cause.expected))
                else:
                    kept.append(cause)
            if kept:
                self.pending[key] = kept
            else:
                del self.pending[key]
        for key in list(self.early):
            fresh = [(s, at) for s, at in self.early[key] if now - at < 3.0]
            if fresh:
                self.early[key] = fresh
            else:
                del self.early[key]
