"""Volume upload, download and conversion: through the panel versus the tools by hand.

Upload: `PUT /api/v1/volumes/{id}/upload/` through the web server into libvirt's
volume stream, beside the same PUT to a missing volume (what the web server and Django
take to accept the body) plus `virsh vol-upload` of the same file; and the
browser's way, the websocket upload (1 MiB frames, four in flight), beside
`virsh vol-upload` alone. Download: `GET
/api/v1/volumes/{id}/download/` beside `virsh vol-download`. Convert: the
panel's convert job (libvirt's createXMLFrom, with progress) beside
`qemu-img convert -O qcow2` and `sync` by hand. Goal for each: >= 70 % of the by-hand
throughput (upload/download) or <= 130 % of its time (convert).

Run: .venv/bin/python benchmarks/storage.py [--mib 256]
Needs the local libvirtd. Everything runs on 127.0.0.1; the pool lives in a
temporary directory under /var/lib/libvirt/images and is removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from common import REPO, free_port, isolated_django, make_session, wait_port, web_server  # noqa: E402

WORK = isolated_django("panel-bench-storage-")

from django.core.management import call_command  # noqa: E402

from panel.actors import Actor  # noqa: E402
from panel.hypervisor import storage as hv  # noqa: E402
from panel.models import Host, Job  # noqa: E402
from storage import services  # noqa: E402
from storage.models import Volume  # noqa: E402

URI = "qemu:///system"
MIB = 1024 * 1024


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def virsh(*args: str) -> None:
    subprocess.run(["virsh", "-c", URI, *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256, help="file size in MiB (256)")
    size = parser.parse_args().mib * MIB

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    admin = get_user_model().objects.create_superuser("bench", "", "bench-pass-1")
    token = Token.objects.create(user=admin).key
    host = Host.objects.create(name="local", uri=URI, state="up")
    pool_dir = Path("/var/lib/libvirt/images") / f"panel-bench-{os.getpid()}"
    source = WORK / "source.img"
    with open(source, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
    procs: list[subprocess.Popen] = []
    pool = None
    try:
        pool = services.create_pool(
            host,
            {"name": pool_dir.name, "type": "dir", "target_path": str(pool_dir)},
            actor=Actor(admin),
        )
        port = free_port()
        procs.append(start_web(port))
        wait_port(port)
        took = measure(pool, admin, Transfers(port, token, source, size))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        if pool is not None:
            hv.delete_pool(URI, pool.name)
        shutil.rmtree(pool_dir, ignore_errors=True)
        shutil.rmtree(WORK, ignore_errors=True)
    print_figures(size, took)


def start_web(port: int) -> subprocess.Popen:
    env = {**os.environ, "PANEL_DEV_STATIC": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        web_server(port),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(pool, admin, panel: Transfers) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Each transfer by hand and through the panel, in turn: seconds by name."""

    def volume(name: str) -> Volume:
        return services.create_volume(
            pool, name=name, format="raw", capacity_gib=panel.size / 1024**3, actor=Actor(admin)
        )

    took: dict[str, float] = {}
    raw_vol = volume("by-hand.img")
    took["raw_up"] = timed(
        lambda: virsh("vol-upload", "--pool", pool.name, raw_vol.name, str(panel.source))
    )
    panel_vol = volume("panel.img")
    took["panel_up"] = timed(lambda: panel.put(panel_vol.pk))
    ws_vol = volume("websocket.img")
    sessionid = make_session(admin)
    took["panel_ws_up"] = timed(lambda: panel.ws_upload(ws_vol.pk, sessionid))
    took["intake"] = timed(panel.put_nowhere)
    took["raw_down"] = timed(
        lambda: virsh("vol-download", "--pool", pool.name, raw_vol.name, str(WORK / "down.img"))
    )
    (WORK / "down.img").unlink()
    took["panel_down"] = timed(lambda: panel.get(panel_vol.pk))
    took["raw_convert"] = timed(
        lambda: subprocess.run(
            [
                "qemu-img",
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                raw_vol.path,
                str(WORK / "c.qcow2"),
            ],
            check=True,
        )
    )
    took["panel_convert"] = timed(lambda: convert(panel_vol, admin))
    return took


class Transfers:
    """The panel's ways of moving a volume's bytes, on the web server at port: the API's
    PUT and GET with a token, and the browser's websocket upload with a session."""

    def __init__(self, port: int, token: str, source: Path, size: int) -> None:
        self.port, self.token, self.source, self.size = port, token, source, size

    def put_to(self, path: str) -> int:
        """PUT the source file to path; the status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600, blocksize=MIB)
        with open(self.source, "rb") as body:
            conn.request(
                "PUT",
                path,
                body=body,
                headers={
                    "Authorization": f"Token {self.token}",
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(self.size),
                },
            )
            response = conn.getresponse()
            response.read()
            return response.status

    def put(self, volume_id: int) -> None:
        status = self.put_to(f"/api/v1/volumes/{volume_id}/upload/")
        if status != 202:
            raise RuntimeError(f"upload answered {status}")

    def put_nowhere(self) -> None:
        # What the web server and Django take to accept the body, for a volume that does not exist.
        self.put_to("/api/v1/volumes/0/upload/")

    def ws_upload(self, volume_id: int, sessionid: str) -> None:
        # As the browser does: 1 MiB frames, four in flight, paced by the acknowledgements.
        from websockets.sync.client import connect

        size = self.size
        with (
            connect(
                f"ws://127.0.0.1:{self.port}/ws/volumes/{volume_id}/upload/",
                additional_headers={
                    "Origin": f"http://127.0.0.1:{self.port}",
                    "Cookie": f"sessionid={sessionid}",
                },
                max_size=None,
            ) as ws,
            open(self.source, "rb") as body,
        ):
            ws.send(json.dumps({"size": size}))
            json.loads(ws.recv(timeout=30))
            sent = acked = 0
            while acked < size:
                while sent < size and sent - acked < 4 * MIB:
                    chunk = body.read(MIB)
                    ws.send(chunk)
                    sent += len(chunk)
                acked = json.loads(ws.recv(timeout=60)).get("received", acked)
            done = json.loads(ws.recv(timeout=60))
            if not done.get("done"):
                raise RuntimeError(f"websocket upload failed: {done}")

    def get(self, volume_id: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request(
            "GET",
            f"/api/v1/volumes/{volume_id}/download/",
            headers={"Authorization": f"Token {self.token}"},
        )
        response = conn.getresponse()
        got = 0
        while chunk := response.read(MIB):
            got += len(chunk)
        if got != self.size:
            raise RuntimeError(f"download gave {got} of {self.size} bytes")


def convert(volume: Volume, admin) -> None:  # type: ignore[no-untyped-def]
    """The panel's convert job to qcow2, run inline as a worker runs it."""
    job = services.copy_volume(volume, name="panel.qcow2", format="qcow2", actor=Actor(admin))
    from storage.tasks import volume_job_task

    volume_job_task(job.pk)
    if Job.objects.get(pk=job.pk).state != "succeeded":
        raise RuntimeError("the convert job failed")


def print_figures(size: int, took: dict[str, float]) -> None:
    mb = size / 1e6
    raw_up, intake = took["raw_up"], took["intake"]
    panel_up, panel_ws_up = took["panel_up"], took["panel_ws_up"]
    raw_down, panel_down = took["raw_down"], took["panel_down"]
    raw_convert, panel_convert = took["raw_convert"], took["panel_convert"]
    by_hand_up = intake + raw_up  # the web server's intake, then virsh vol-upload
    rows = [
        ("upload MB/s", mb / by_hand_up, mb / panel_up, by_hand_up / panel_up >= 0.7, ">= 70 %"),
        ("upload (ws) MB/s", mb / raw_up, mb / panel_ws_up, raw_up / panel_ws_up >= 0.7, ">= 70 %"),
        ("download MB/s", mb / raw_down, mb / panel_down, raw_down / panel_down >= 0.7, ">= 70 %"),
        ("convert s", raw_convert, panel_convert, panel_convert <= 1.3 * raw_convert, "<= 130 %"),
    ]
    print(f"\n{size // MIB} MiB of random data, pool on local disk, 127.0.0.1")
    print(
        f"web server intake alone (PUT answered 404 after the web server and Django took the body): "
        f"{intake:.2f} s = {mb / intake:.0f} MB/s; virsh vol-upload alone: {mb / raw_up:.0f} MB/s\n"
    )
    print(f"{'figure':<18}{'by hand':>10}{'panel':>10}{'ratio':>8}  goal      result")
    for name, base, ours, ok, goal in rows:
        ratio = ours / base
        print(
            f"{name:<16}{base:>10.1f}{ours:>10.1f}{ratio:>8.2f}  {goal:<9} {'ok' if ok else 'MISS'}"
        )


if __name__ == "__main__":
    main()
