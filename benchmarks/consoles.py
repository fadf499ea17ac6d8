"""Console latency and throughput: through the panel versus straight to the guest.

Serial: keystroke echo round trip through the panel's websocket (the web server +
SerialConsoleConsumer) beside a raw libvirt console stream on the same guest.
Goal: panel p50 <= raw p50 + 5 ms.

VNC: bytes per second of full framebuffer updates through websockify (with a
ticket) beside a direct TCP connection to the VNC port. Goal: >= 90 %.

Run: .venv/bin/python benchmarks/consoles.py
Needs the local libvirtd and the tiny guest (scripts/build-test-guest.sh).
Everything runs on 127.0.0.1, bounded in count and time.
"""

from __future__ import annotations

import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, free_port, isolated_django, wait_port, web_server  # noqa: E402

WORK = isolated_django("panel-bench-consoles-")

from django.core.management import call_command  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from panel import hypervisor  # noqa: E402
from panel.actors import Actor  # noqa: E402
from panel.models import Host  # noqa: E402
from vms import consoles  # noqa: E402
from vms.services import sync_domain  # noqa: E402

URI = "qemu:///system"
GUEST = Path("/var/lib/libvirt/boot/panel-test-guest")
KEYS = 200
VNC_SECONDS = 3.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def echo_raw(uuid: str) -> list[float]:
    stream = hypervisor.open_console(URI, uuid)
    try:
        stream.send(b"\r")
        stream.read_until(b"guest# ", 30)
        times = []
        for _ in range(KEYS):
            mark = len(stream.output())
            t0 = time.perf_counter()
            stream.send(b"x")
            stream.read_until(b"x", 5, start=mark)
            times.append((time.perf_counter() - t0) * 1000)
        stream.send(b"\x15")  # Ctrl-U: clear the line
        return times
    finally:
        stream.close()


def echo_panel(url: str, origin: str) -> list[float]:
    with connect(url, additional_headers={"Origin": origin}, open_timeout=10) as ws:
        ws.send(b"\r")
        buf = b""
        while b"guest# " not in buf:
            msg = ws.recv(timeout=30)
            buf += msg if isinstance(msg, bytes) else msg.encode()
        times = []
        for _ in range(KEYS):
            t0 = time.perf_counter()
            ws.send(b"x")
            got = b""
            while b"x" not in got:
                msg = ws.recv(timeout=5)
                got += msg if isinstance(msg, bytes) else msg.encode()
            times.append((time.perf_counter() - t0) * 1000)
        ws.send(b"\x15")
        return times


class RFB:
    """Just enough RFB 3.8 to ask for full frames and count the bytes."""

    def __init__(self, recv, send) -> None:  # type: ignore[no-untyped-def]
        self.recv, self.send, self.buf = recv, send, b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self.recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def handshake(self) -> tuple[int, int]:
        self.read(12)
        self.send(b"RFB 003.008\n")
        count = self.read(1)[0]
        types = self.read(count)
        if 1 not in types:
            raise RuntimeError("the VNC server wants a password")
        self.send(b"\x01")
        self.read(4)  # security result
        self.send(b"\x01")  # shared
        width, height = struct.unpack(">HH", self.read(4))
        self.read(16)
        name_len = struct.unpack(">I", self.read(4))[0]
        self.read(name_len)
        self.send(struct.pack(">BxH", 2, 1) + struct.pack(">i", 0))  # raw encoding only
        return width, height

    def throughput(self, width: int, height: int, seconds: float) -> float:
        total = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
            kind = self.read(1)[0]
            if kind != 0:
                continue
            self.read(1)
            rects = struct.unpack(">H", self.read(2))[0]
            for _ in range(rects):
                _x, _y, w, h, enc = struct.unpack(">HHHHi", self.read(12))
                if enc == 0:
                    self.read(w * h * 4)
                    total += w * h * 4
        return total / (time.perf_counter() - start)


def vnc_direct(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        rfb = RFB(lambda: s.recv(1 << 20), s.sendall)
        w, h = rfb.handshake()
        return rfb.throughput(w, h, VNC_SECONDS)


def vnc_websockify(url: str) -> float:
    with connect(url, subprotocols=["binary"], open_timeout=10, max_size=None) as ws:
        rfb = RFB(lambda: ws.recv(timeout=10), ws.send)
        w, h = rfb.handshake()
        return rfb.throughput(w, h, VNC_SECONDS)


def main() -> None:
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("bench", "", "bench-pass-1")
    host = Host.objects.create(name="local", uri=URI, state="up")
    spec = hypervisor.DomainSpec(
        name=f"paneltest-bench-{os.getpid()}",
        memory_mib=96,
        kernel=str(GUEST / "vmlinuz"),
        initrd=str(GUEST / "initrd.img"),
        cmdline="console=tty0 console=ttyS0 quiet",
        vnc=True,
    )
    info = hypervisor.create_transient(URI, spec)
    procs: list[subprocess.Popen] = []
    try:
        vm = sync_domain(host, info)
        web_port, vnc_proxy = free_port(), free_port()
        start_servers(web_port, vnc_proxy, procs)
        wait_port(web_port)
        wait_port(vnc_proxy)
        time.sleep(3)  # let the guest boot to its prompt

        raw = echo_raw(str(vm.pk))
        origin = f"http://127.0.0.1:{web_port}"
        t = consoles.issue_ticket(vm, Actor(admin), "serial", ws_base=f"ws://127.0.0.1:{web_port}")
        panel = echo_panel(t["url"], origin)

        vnc_port = next(g.port for g in hypervisor.get_domain(URI, str(vm.pk)).graphics if g.port)
        direct = vnc_direct(vnc_port)
        t = consoles.issue_ticket(vm, Actor(admin), "vnc", ws_base="")
        proxied = vnc_websockify(f"ws://127.0.0.1:{vnc_proxy}/?token={t['ticket']}")

        print_serial(raw, panel)
        print_vnc(direct, proxied)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        try:
            hypervisor.destroy_domain(URI, info.uuid)
        except hypervisor.HypervisorError:
            pass


def start_servers(web_port: int, vnc_proxy: int, procs: list[subprocess.Popen]) -> None:
    """The web server and websockify (with the panel's ticket plugin) on loopback, each
    added to procs as it starts."""
    env = {**os.environ, "PANEL_DEV_STATIC": "1", "PYTHONPATH": str(REPO)}
    venv = Path(sys.executable).parent
    procs.append(
        subprocess.Popen(
            web_server(web_port),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    proxy = subprocess.Popen(
        [
            str(venv / "websockify"),
            "--token-plugin",
            "panel.console_tokens.TicketTokens",
            "--token-source",
            os.environ["REDIS_URL"],
            f"127.0.0.1:{vnc_proxy}",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(proxy)


def print_serial(raw: list[float], panel: list[float]) -> None:
    raw50, panel50 = statistics.median(raw), statistics.median(panel)
    print(f"serial echo, {KEYS} keystrokes (ms)      p50      p95      max")
    print(f"  raw libvirt stream             {raw50:8.2f} {pct(raw, 0.95):8.2f} {max(raw):8.2f}")
    print(
        f"  through the panel (websocket)  {panel50:8.2f} {pct(panel, 0.95):8.2f} {max(panel):8.2f}"
    )
    ok = panel50 <= raw50 + 5
    print(
        f"  goal: panel p50 <= raw p50 + 5 ms -> {'PASS' if ok else 'MISS'} "
        f"(+{panel50 - raw50:.2f} ms)"
    )


def print_vnc(direct: float, proxied: float) -> None:
    ratio = proxied / direct if direct else 0
    print(f"VNC full frames, {VNC_SECONDS:.0f} s each (MB/s)")
    print(f"  direct TCP to the VNC port     {direct / 1e6:8.1f}")
    print(f"  through websockify (ticket)    {proxied / 1e6:8.1f}")
    print(f"  goal: >= 90 % of direct -> {'PASS' if ratio >= 0.9 else 'MISS'} ({ratio:.0%})")


if __name__ == "__main__":
    main()
