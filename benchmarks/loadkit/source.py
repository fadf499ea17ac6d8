"""The event source: a helper process (load.py --event-source POOL RATE) playing the world
outside the panel for its share of the hosts, and telling the load generator on its
standard output what it changed and when."""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import REPO_ROOT


def event_source(pool_file: Path, rate: float) -> int:
    """Play the world outside the panel: power VMs of the pool on and off on this process's
    connection to their host, and apply each change with the watcher's own code. Prints
    'C <uuid> <new state> <monotonic time>' just before each change, then 'D <seconds>'
    (the change made and applied) or 'E <error>'."""
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    changes = Changes()
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    pool = json.loads(pool_file.read_text())
    random.Random(7).shuffle(pool)
    out = sys.stdout
    interval = 1.0 / rate
    due = time.monotonic()
    n = 0
    while not stop:
        vm = pool[n % len(pool)]
        n += 1
        target = "running" if vm[4] == "shutoff" else "shutoff"
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            due = time.monotonic()  # more than a second behind: go on from now, no burst
        due += interval
        try:
            out.write(f"C {vm[0]} {target} {time.monotonic():.6f}\n")
            out.flush()
        except BrokenPipeError:
            return 0  # the load generator is gone
        line = changes.make(vm, target)
        try:
            out.write(line)
            out.flush()
        except BrokenPipeError:
            return 0
        vm[4] = target
    return 0


class Changes:
    """VM changes made on this process's connections to the simulated hosts and applied
    with the watcher's own code (panel.watcher.HostWatcher.apply)."""

    def __init__(self) -> None:
        from panel import hypervisor
        from panel.hypervisor.watch import DomainEvent
        from panel.watcher import HostWatcher

        self.hypervisor = hypervisor
        self.domain_event = DomainEvent
        self.watcher = HostWatcher()

    def make(self, vm: list[Any], target: str) -> str:
        """Power the VM [uuid, name, host id, URI, state] to target and apply the change;
        the line that tells how it went."""
        uuid, name, host_id, uri, _state = vm
        started = time.monotonic()
        try:
            if target == "running":
                self.hypervisor.start_domain(uri, uuid)
            else:
                self.hypervisor.destroy_domain(uri, uuid)
            event = "started" if target == "running" else "stopped"
            self.watcher.apply(host_id, self.domain_event(uuid=uuid, name=name, event=event))
            return f"D {time.monotonic() - started:.6f}\n"
        except Exception as exc:  # noqa: BLE001 - reported to the load generator
            return f"E {type(exc).__name__}: {str(exc)[:200]}\n"
