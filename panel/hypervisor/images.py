"""What a disk image's header says, read without qemu: never trusted, only checked.

A volume's format is what the panel recorded, never what its content claims, and qemu
is always told it explicitly. Content still matters where qemu follows it: a qcow2
header may name a backing file (a host file, another project's volume, a `json:`
pseudo-protocol), an external data file; a VMDK descriptor may name extents. OpenStack's
answer (CVE-2024-32498) is a pure-Python format inspector with a safety check, in
oslo.utils; this module runs it on the first bytes of an image and reports what it found
in terms the panel can act on. It never opens another file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

# qcow2 keeps its backing file name inside the first cluster (at most 2 MiB); a VMDK's
# descriptor lies within 1 MiB after its 512-byte header. Everything else is nearer.
HEAD_BYTES = 2 * 1024 * 1024 + 64 * 1024
CHUNK = 64 * 1024

# The panel's (qemu's) format names and the inspector's.
INSPECTOR_NAMES = {
    "raw": "raw",
    "iso": "raw",
    "qcow2": "qcow2",
    "qed": "qed",
    "vmdk": "vmdk",
    "vdi": "vdi",
    "vpc": "vhd",
}
# What a raw volume may hold and still be raw: qemu reads these as plain bytes.
RAW_CONTENT = {"iso", "gpt", "luks"}
QEMU_NAMES = {"vhd": "vpc"}
# The inspector's checks, in words a user can act on.
CHECKS = {
    "backing_file": "its header names a backing file",
    "data_file": "its header keeps the data in another file (a qcow2 external data file)",
    "unknown_features": "its header uses qcow2 features the panel cannot check",
    "descriptor": "its VMDK descriptor names other files (extents) or is not a single-file "
    "VMDK (only monolithicSparse and streamOptimized are accepted)",
    "footer": "its VMDK footer does not match its header",
    "banned": "the panel cannot check images of this format",
}

# The inspector logs a warning for every refused check: the refusal is ours to report.
logging.getLogger(fi.__name__).setLevel(logging.ERROR)


@dataclass(frozen=True)
class ImageFacts:
    """What the first bytes of an image say, checked against the format it was declared.

    problems: why the image may not be used as declared (empty: it may). backing_file:
    the backing file its qcow2 header names ('' none), left out of problems: whether it
    is allowed is the caller's decision. detected: the formats the content matches
    besides raw, in qemu's names.
    """

    declared: str
    detected: tuple[str, ...]
    problems: tuple[str, ...]
    backing_file: str = ""
    virtual_size: int = 0


def _feed(inspector: fi.FileInspector, head: bytes, whole: bool) -> bool:
    """Give the inspector the head; False when it gave up (not its format)."""
    try:
        for start in range(0, len(head), CHUNK):
            inspector.eat_chunk(head[start : start + CHUNK])
            if inspector.complete:
                break
        if whole or not inspector.complete:
            inspector.finish()
    except Exception:  # noqa: BLE001 - an inspector raises anything on content not its own
        return False
    return True


def _matches(inspector: fi.FileInspector) -> bool:
    try:
        return bool(inspector.format_match)
    except Exception:  # noqa: BLE001 - half-read headers make some inspectors raise
        return False


def _backing_name(inspector: fi.FileInspector, head: bytes) -> str | None:
    """The backing file name a qcow2 header points at (the inspector parsed the header);
    None when it lies beyond what was read."""
    header = getattr(inspector, "qemu_header_info", {}) or {}
    offset, size = int(header.get("bf_offset", 0)), int(header.get("bf_sz", 0))
    if not offset or offset + size > len(head) or size > 4096:
        return None
    return head[offset : offset + size].decode("utf-8", "replace")


_VMDK_PARENT = re.compile(rb'(?im)^[ \t]*parentFileNameHint[ \t]*=[ \t]*"([^"\r\n]*)"')


def _vmdk_parent(inspector: fi.FileInspector, head: bytes) -> str:
    """The parent (backing) file a VMDK descriptor names: the inspector accepts a
    descriptor naming one, and qemu opens it as the image's backing file."""
    if "parentfilenamehint" not in (getattr(inspector, "desc_text", "") or ""):
        return ""
    found = _VMDK_PARENT.search(head[: 2 * 1024 * 1024])
    return found.group(1).decode("utf-8", "replace") if found else "(unreadable)"


def _safety_check(inspector: fi.FileInspector, head: bytes, problems: list[str]) -> str:
    """Run the inspector's safety checks, adding each failure to problems; the backing
    file the header names ("" when none)."""
    backing = ""
    try:
        inspector.safety_check()
    except fi.SafetyCheckFailed as failed:
        version = int((getattr(inspector, "qemu_header_info", {}) or {}).get("version", 0))
        for name in failed.failures:
            if name == "data_file" and version == 2:
                # qcow2 v2 (compat=0.10, libvirt's default) has no feature fields: the
                # inspector reads its header extensions there. No data file is possible.
                continue
            if name == "backing_file":
                found = _backing_name(inspector, head)
                if found is None:
                    problems.append("its header names a backing file the panel cannot read")
                else:
                    backing = found
                continue
            problems.append(CHECKS.get(name, f"its header fails the {name} check"))
    except fi.ImageFormatError as exc:
        problems.append(f"its header cannot be read: {exc}")
    return backing


def inspect_head(head: bytes, declared: str, *, whole: bool) -> ImageFacts:
    """Check the first bytes of an image (whole: they are the entire image) against the
    format it is declared to be."""
    wanted = INSPECTOR_NAMES.get(declared)
    if wanted is None:
        return ImageFacts(declared, (), (f"'{declared}' is not a format the panel can check",))
    inspectors = {name: cls() for name, cls in fi.ALL_FORMATS.items()}
    fed = {name: _feed(insp, head, whole) for name, insp in inspectors.items()}
    detected = tuple(
        sorted(
            QEMU_NAMES.get(name, name)
            for name, insp in inspectors.items()
            if name != "raw" and fed[name] and _matches(insp)
        )
    )
    if wanted == "raw":
        other = [d for d in detected if d not in RAW_CONTENT]
        not_raw = (
            (
                f"the content is a {other[0]} image, not raw (a {other[0]} image goes into "
                f"a {other[0]} volume, where it is checked as one)",
            )
            if other
            else ()
        )
        return ImageFacts(declared, detected, not_raw, virtual_size=len(head) if whole else 0)
    inspector = inspectors[wanted]
    qemu_name = QEMU_NAMES.get(wanted, wanted)
    if not fed[wanted] or not inspector.complete or not _matches(inspector):
        seen = ", ".join(detected) or "raw data"
        return ImageFacts(
            declared, detected, (f"the content is not a {qemu_name} image (it reads as {seen})",)
        )
    problems: list[str] = []
    others = [d for d in detected if d != qemu_name]
    if others:
        problems.append(f"the content is also a valid {others[0]} image (a disguised header)")
    backing = _safety_check(inspector, head, problems)
    if wanted == "vmdk" and not backing:
        backing = _vmdk_parent(inspector, head)
    size = 0
    with contextlib.suppress(Exception):
        size = int(inspector.virtual_size)
    return ImageFacts(declared, detected, tuple(problems), backing, size)


def backing_path(image_path: str, name: str) -> str:
    """The file a backing file name reaches, as qemu resolves it: relative names are
    beside the image. Protocols and json: pseudo-files are returned as they are."""
    if not name or ":" in name.split("/", 1)[0] or name.startswith("json:"):
        return name
    if not name.startswith("/"):
        name = os.path.join(os.path.dirname(image_path), name)
    return os.path.normpath(name)
