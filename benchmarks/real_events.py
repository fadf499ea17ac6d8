"""Event to browser on the real libvirtd (qemu:///system), as vm_inventory.py --real and
host_leases.py measure it: rounds of starting and destroying the tiny guest (transient
domains paneltest-bench-*), each timed from the libvirt call returning until an admin's
websocket on /ws/hosts/<id>/ shows the new state, beside libvirt's own lifecycle event
reaching a bare client; and what the measure needs (the guest, libvirtd) and leaves
behind (the domains, removed whatever happened)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchkit import Report, percentile, say

GUEST_DIR = Path("/var/lib/libvirt/boot/panel-test-guest")
REAL_URI = "qemu:///system"
REAL_PREFIX = "paneltest-bench-"
GOAL_EVENT_P95_S = 1.0
WAIT_S = 10.0  # a state change not shown within this counts as never shown


def real_prerequisites() -> str:
    """Why the --real part cannot run here ('' when it can)."""
    for name in ("vmlinuz", "initrd.img"):
        if not (GUEST_DIR / name).exists():
            return f"{GUEST_DIR / name} is missing (scripts/install.sh --test builds it)"
    try:
        import libvirt

        libvirt.open(REAL_URI).close()
    except Exception as exc:  # noqa: BLE001
        return f"cannot open {REAL_URI}: {exc}"
    return ""


def remove_real_domains(conn=None) -> None:  # type: ignore[no-untyped-def]
    """Destroy (and undefine) every paneltest-bench-* domain on qemu:///system."""
    import libvirt

    own = conn is None
    if own:
        conn = libvirt.open(REAL_URI)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(REAL_PREFIX):
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                    if dom.isPersistent():
                        dom.undefine()
    finally:
        if own:
            conn.close()


def fmt_ms(value: float | None) -> str:
    # A libvirt event can reach a client a hair before the call that caused it returns: < 0.
    return "   -   " if value is None else f"{value * 1000:5.1f} ms"


class Arrivals:
    """What arrives after a libvirt call, each with the perf_counter time it came: the
    messages of the host's websocket (read by a thread of their own) and libvirt's own
    lifecycle events (subscribed on conn)."""

    def __init__(self, conn) -> None:  # type: ignore[no-untyped-def]
        import libvirt

        self.messages: queue.Queue[tuple[float, dict]] = queue.Queue()
        self.lifecycle: queue.Queue[tuple[float, str, int]] = queue.Queue()
        self.callback = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self.on_lifecycle, None
        )

    def on_lifecycle(self, _c, dom, event, _detail, _opaque):  # type: ignore[no-untyped-def]
        self.lifecycle.put((time.perf_counter(), dom.UUIDString(), event))

    def follow(self, ws) -> None:  # type: ignore[no-untyped-def]
        def reader() -> None:
            with contextlib.suppress(Exception):
                while True:
                    message = ws.recv()
                    self.messages.put((time.perf_counter(), json.loads(message)))

        threading.Thread(target=reader, name="ws-reader", daemon=True).start()

    def on_websocket(self, uuid_: str, accept: Callable[[str], bool], since: float) -> float | None:
        """Seconds from since to the vm.update of uuid_ in a state accept()s; None: none came."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                at, msg = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            vm = msg.get("vm") or {}
            if (
                msg.get("type") == "vm.update"
                and vm.get("id") == uuid_
                and accept(vm.get("state", ""))
            ):
                return at - since
        return None

    def from_libvirt(self, uuid_: str, events: set[int], since: float) -> float | None:
        """Seconds from since to libvirt's lifecycle event of uuid_; None: none came."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                at, u, ev = self.lifecycle.get(timeout=0.2)
            except queue.Empty:
                continue
            if u == uuid_ and ev in events:
                return at - since
        return None


@dataclass
class Latencies:
    browser: list[float] = field(default_factory=list)  # inf: never shown
    raw: list[float] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)


def guest_round(conn, arrivals: Arrivals, i: int, seen: Latencies) -> None:  # type: ignore[no-untyped-def]
    """Start a new transient tiny guest and destroy it, timing what each change reaches."""
    import libvirt

    from panel.hypervisor import DomainSpec
    from panel.hypervisor.xml import build_domain

    spec = DomainSpec(
        name=f"{REAL_PREFIX}{uuid.uuid4().hex[:8]}",
        domain_type="qemu",
        memory_mib=96,
        vcpus=1,
        kernel=str(GUEST_DIR / "vmlinuz"),
        initrd=str(GUEST_DIR / "initrd.img"),
        cmdline="console=ttyS0 quiet",
        vnc=False,
    )
    dom = conn.createXML(build_domain(spec), 0)
    t_start = time.perf_counter()
    uid = dom.UUIDString()
    lat_start = arrivals.on_websocket(uid, lambda s: s == "running", t_start)
    raw_start = arrivals.from_libvirt(uid, {libvirt.VIR_DOMAIN_EVENT_STARTED}, t_start)
    time.sleep(0.3)
    dom.destroy()
    t_stop = time.perf_counter()
    lat_stop = arrivals.on_websocket(uid, lambda s: s != "running", t_stop)
    raw_stop = arrivals.from_libvirt(uid, {libvirt.VIR_DOMAIN_EVENT_STOPPED}, t_stop)
    for what, lat, rlat in (("start", lat_start, raw_start), ("destroy", lat_stop, raw_stop)):
        if lat is None:
            seen.detail.append(f"round {i + 1} {what}: no websocket message within 10 s")
            seen.browser.append(math.inf)
        else:
            seen.browser.append(lat)
        if rlat is not None:
            seen.raw.append(rlat)
    say(
        f"  round {i + 1:2d}: start -> browser {fmt_ms(lat_start)}, destroy -> browser {fmt_ms(lat_stop)}"
        f"   (libvirt event to a client: {fmt_ms(raw_start)}, {fmt_ms(raw_stop)})"
    )


def real_latency(
    args: argparse.Namespace,
    port: int,
    sessionid: str,
    host_id: int,
    report: Report,
    label: str = "",
) -> float:
    """args.rounds start/destroy rounds of the tiny guest on qemu:///system, timed until the
    host's websocket shows each new state; figures named with label when given (one run
    measuring more than once). Returns the p95 in seconds."""
    import libvirt
    from websockets.sync.client import connect

    from panel.hypervisor.connection import event_loop

    event_loop.ensure()  # libvirt's event loop thread, for the baseline subscription below
    conn = libvirt.open(REAL_URI)
    arrivals = Arrivals(conn)
    url = f"ws://127.0.0.1:{port}/ws/hosts/{host_id}/"
    headers = {"Cookie": f"sessionid={sessionid}", "Origin": f"http://127.0.0.1:{port}"}
    seen = Latencies()
    try:
        with connect(url, additional_headers=headers, open_timeout=10) as ws:
            snapshot = json.loads(ws.recv(timeout=10))
            assert snapshot["type"] == "host.update", snapshot
            arrivals.follow(ws)
            for i in range(args.rounds):
                guest_round(conn, arrivals, i, seen)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.domainEventDeregisterAny(arrivals.callback)
        remove_real_domains(conn)
        conn.close()
    return report_latency(seen, report, label)


def report_latency(seen: Latencies, report: Report, label: str) -> float:
    """Print and report the rounds' figures; the p95 of event to browser, in seconds."""
    browser, raw = seen.browser, seen.raw
    for line in seen.detail:
        say(f"  {line}")
    p50, p95 = percentile(browser, 50), percentile(browser, 95)
    say(
        f"  event to browser: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(browser) * 1000:.0f} ms "
        f"over {len(browser)} state changes"
    )
    if raw:
        say(
            f"  baseline, libvirt event to a bare client: p50 {percentile(raw, 50) * 1000:.1f} ms, "
            f"p95 {percentile(raw, 95) * 1000:.1f} ms"
        )
        report.add(
            f"baseline: libvirt event to a bare client p95{f' ({label})' if label else ''}",
            f"{percentile(raw, 95) * 1000:.1f} ms",
        )
    report.add(
        f"event to browser p95 (real libvirtd{f', {label}' if label else ''}, n={len(browser)})",
        f"{p95 * 1000:.0f} ms (p50 {p50 * 1000:.0f})",
        f"< {GOAL_EVENT_P95_S * 1000:.0f} ms",
        p95 < GOAL_EVENT_P95_S,
    )
    return p95
