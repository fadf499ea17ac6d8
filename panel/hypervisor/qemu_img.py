"""qemu-img's view of an image: info with the backing chain, internal snapshots, check.

libvirt has no call for these, so they run qemu-img on this machine: they work
for volumes of the panel's own host (a local URI), and say so for others.
Images a running guest holds are read with --force-share.
"""

from __future__ import annotations

import json
import subprocess

from .errors import Conflict, HypervisorError
from .host import is_local

TIMEOUT = 600
# What `qemu-img create` can write and libvirt's storage driver knows.
FORMATS = ("raw", "qcow2", "qed", "vmdk", "vdi", "vpc")


def _require_local(uri: str) -> None:
    if not is_local(uri):
        raise Conflict(
            "qemu-img runs on the panel's own host only; this volume is on a remote host "
            "(its format, sizes and backing file come from libvirt instead)."
        )


def _run(args: list[str], ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            ["qemu-img", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError as exc:
        raise HypervisorError("qemu-img is not installed on this host.") from exc
    except subprocess.TimeoutExpired as exc:
        raise HypervisorError(f"qemu-img {args[0]} took longer than {TIMEOUT} s.") from exc
    if proc.returncode not in ok:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise HypervisorError(message[-1] if message else f"qemu-img {args[0]} failed.")
    return proc


def info(uri: str, path: str) -> list[dict[str, object]]:
    """The image and each image of its backing chain, as qemu-img reports them."""
    _require_local(uri)
    proc = _run(["info", "--output=json", "--backing-chain", "--force-share", path])
    data = json.loads(proc.stdout)
    chain = data if isinstance(data, list) else [data]
    return [
        {
            "path": image.get("filename", ""),
            "format": image.get("format", ""),
            "virtual_size": image.get("virtual-size", 0),
            "actual_size": image.get("actual-size", 0),
            "backing_file": image.get("backing-filename", ""),
            "snapshots": [
                {
                    "id": s.get("id", ""),
                    "name": s.get("name", ""),
                    "vm_state_size": s.get("vm-state-size", 0),
                    "date": s.get("date-sec", 0),
                }
                for s in image.get("snapshots", [])
            ],
            "dirty": bool(image.get("dirty-flag", False)),
        }
        for image in chain
    ]


def check(uri: str, path: str, fmt: str) -> dict[str, object]:
    """`qemu-img check`: {"ok", "summary", "leaks", "corruptions", ...}."""
    _require_local(uri)
    if fmt == "raw":
        return {"ok": True, "summary": "Raw images have no metadata to check.", "supported": False}
    # Exit 0: clean; 2: corruptions; 3: leaked clusters only; 63: format cannot be checked.
    proc = _run(["check", "--output=json", "--force-share", "-f", fmt, path], ok=(0, 1, 2, 3, 63))
    if proc.returncode == 63:
        return {"ok": True, "summary": f"{fmt} images cannot be checked.", "supported": False}
    if proc.returncode == 1 and not proc.stdout.strip():
        raise HypervisorError((proc.stderr or "qemu-img check failed.").strip())
    data = json.loads(proc.stdout or "{}")
    corruptions = int(data.get("corruptions", 0))
    leaks = int(data.get("leaks", 0))
    errors = int(data.get("check-errors", 0))
    ok = corruptions == 0 and errors == 0
    if ok and not leaks:
        summary = "No errors were found on the image."
    elif ok:
        summary = f"{leaks} leaked clusters (wasted space, no data at risk)."
    else:
        summary = f"{corruptions} corruptions and {errors} check errors: the image is damaged."
    return {
        "ok": ok,
        "summary": summary,
        "corruptions": corruptions,
        "leaks": leaks,
        "check_errors": errors,
        "supported": True,
    }


def create_full(uri: str, path: str, fmt: str, capacity: int) -> None:
    """Create an image with preallocation=full (every byte written), which libvirt cannot do
    for formats other than raw."""
    _require_local(uri)
    _run(["create", "-q", "-f", fmt, "-o", "preallocation=full", path, str(capacity)])
