"""qemu-img's view of an image: info, internal snapshots, check, and copies.

libvirt has no call for these, so they run qemu-img on this machine: they work
for volumes of the panel's own host (a local URI), and say so for others.
Images a running guest holds are read with --force-share.

qemu-img never guesses: every image is named as a `json:` block spec giving its format
and its whole backing chain as the panel recorded them (a chain ends in "backing": null),
so nothing in the file's header (a backing file, a format) is followed.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

from .errors import Conflict, HypervisorError
from .host import is_local
from .specs import BackingInfo

TIMEOUT = 600
COPY_TIMEOUT = 24 * 3600  # a copy of a large image is a job: bounded by the job, not here
# What `qemu-img create` can write and libvirt's storage driver knows.
FORMATS = ("raw", "qcow2", "qed", "vmdk", "vdi", "vpc")


@dataclass(frozen=True)
class PinnedImage:
    """An image as qemu must open it: its recorded format and backing chain (nearest
    first); nothing is read from its header."""

    path: str
    format: str
    backing: tuple[BackingInfo, ...] = ()


def _node(path: str, fmt: str) -> dict[str, object]:
    protocol = "host_device" if path.startswith("/dev/") else "file"
    driver = "raw" if fmt in ("", "iso") else fmt
    return {"driver": driver, "file": {"driver": protocol, "filename": path}}


def block_spec(image: PinnedImage) -> str:
    """The image as a `json:` filename for qemu-img: format and chain explicit."""
    top = node = _node(image.path, image.format)
    for below in image.backing:
        child = _node(below.path, below.format)
        node["backing"] = child
        node = child
    node["backing"] = None
    return "json:" + json.dumps(top, separators=(",", ":"))


def _require_local(uri: str) -> None:
    if not is_local(uri):
        raise Conflict(
            "qemu-img runs on the panel's own host only; this volume is on a remote host "
            "(its format, sizes and backing file come from libvirt instead)."
        )


def _run(
    args: list[str], ok: tuple[int, ...] = (0,), timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            ["qemu-img", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise HypervisorError("qemu-img is not installed on this host.") from exc
    except subprocess.TimeoutExpired as exc:
        raise HypervisorError(f"qemu-img {args[0]} took longer than {timeout:.0f} s.") from exc
    if proc.returncode not in ok:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise HypervisorError(message[-1] if message else f"qemu-img {args[0]} failed.")
    return proc


def info(uri: str, image: PinnedImage) -> list[dict[str, Any]]:
    """The image and each image of its recorded backing chain, as qemu-img reports them
    (each opened as its recorded format, its header's backing file not followed)."""
    _require_local(uri)
    layers = [image] + [
        PinnedImage(b.path, b.format, image.backing[i + 1 :]) for i, b in enumerate(image.backing)
    ]
    chain = []
    for layer in layers:
        # Each layer alone: qemu-img info opens no backing file (and takes no options
        # for one), so the chain is walked as recorded.
        alone = PinnedImage(layer.path, layer.format)
        proc = _run(["info", "--output=json", "--force-share", block_spec(alone)])
        data = json.loads(proc.stdout)
        data["filename"] = layer.path
        data["format"] = layer.format
        # The recorded chain; without one, the name the header gives (shown, never opened).
        if layer.backing:
            data["backing-filename"] = layer.backing[0].path
        chain.append(data)
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
    """`qemu-img check` of the image alone, as fmt: {"ok", "summary", "leaks", ...}."""
    _require_local(uri)
    if fmt in ("raw", "iso", ""):
        return {"ok": True, "summary": "Raw images have no metadata to check.", "supported": False}
    # Exit 0: clean; 2: corruptions; 3: leaked clusters only; 63: format cannot be checked.
    spec = block_spec(PinnedImage(path, fmt))
    proc = _run(["check", "--output=json", "--force-share", spec], ok=(0, 1, 2, 3, 63))
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


def convert(uri: str, source: PinnedImage, dest: str, fmt: str, *, target_is_zero: bool) -> None:
    """Copy source (as recorded, its chain flattened) into the existing image dest, as fmt."""
    _require_local(uri)
    args = ["convert", "-n", "-O", fmt]
    if target_is_zero:
        args.append("--target-is-zero")
    _run([*args, block_spec(source), dest], timeout=COPY_TIMEOUT)


def set_backing(uri: str, path: str, backing: BackingInfo) -> None:
    """Write backing (path and format) into the qcow2 header of path, reading nothing from
    either image (unsafe rebase: the header only). For images the panel made itself, whose
    chain it recorded: the header then says what the record says."""
    _require_local(uri)
    _run(["rebase", "-q", "-u", "-f", "qcow2", "-b", backing.path, "-F", backing.format, path])


def commit(uri: str, top: PinnedImage) -> None:
    """Write the clusters top holds into the first image of its recorded chain (read as
    recorded, nothing from the headers), leaving top as it was."""
    _require_local(uri)
    if not top.backing:
        raise HypervisorError(f"{top.path} has no recorded backing image to commit into.")
    below = top.backing[0]
    spec = block_spec(PinnedImage(top.path, top.format, (below,)))
    _run(["commit", "-q", "-d", spec], timeout=COPY_TIMEOUT)


def resize(uri: str, image: PinnedImage, capacity: int, *, shrink: bool) -> None:
    """Resize the image (as its recorded format) to capacity bytes."""
    _require_local(uri)
    args = ["resize", "-q"] + (["--shrink"] if shrink else [])
    _run([*args, block_spec(PinnedImage(image.path, image.format)), str(capacity)])


def create_full(uri: str, path: str, fmt: str, capacity: int) -> None:
    """Create an image with preallocation=full (every byte written), which libvirt cannot do
    for formats other than raw."""
    _require_local(uri)
    _run(["create", "-q", "-f", fmt, "-o", "preallocation=full", path, str(capacity)])
