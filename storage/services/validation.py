"""Names, paths, sizes, formats and pool specs: what the panel accepts from a form or
the API, refused with a ServiceError that names the field."""

from __future__ import annotations

import math
import os
import re
from typing import Any

from django.conf import settings

from panel import hypervisor
from panel.exceptions import ServiceError
from panel.hypervisor import qemu_img

GIB = 1024**3
MIB = 1024**2
MAX_CAPACITY_GIB = 64 * 1024  # 64 TiB: anything larger is a typo
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
NAME_MAX = 100

FORMATS = qemu_img.FORMATS
PREALLOCATION = {
    "off": "Thin: nothing is allocated up front; the file grows as the guest writes (default).",
    "metadata": "Thin, with qcow2's metadata allocated up front (qcow2 only): faster first writes.",
    "falloc": "Thick, lazily zeroed: the space is reserved but not written.",
    "full": "Thick, zeroed: every byte is allocated and written with zeros; slowest to create.",
}


POOL_TYPES: dict[str, dict[str, Any]] = {
    "dir": {
        "label": "Directory",
        "help": "A directory on the host holds the image files (the usual choice).",
        "fields": ["target_path"],
        "required": ["target_path"],
    },
    "fs": {
        "label": "Filesystem (block device)",
        "help": "A block device with a filesystem, mounted on the target directory.",
        "fields": ["source_devices", "source_format", "target_path"],
        "required": ["source_devices", "target_path"],
    },
    "netfs": {
        "label": "Network filesystem (NFS)",
        "help": "An NFS (or CIFS/GlusterFS) export, mounted on the target directory.",
        "fields": ["source_host", "source_path", "source_format", "target_path"],
        "required": ["source_host", "source_path", "target_path"],
    },
    "logical": {
        "label": "LVM volume group",
        "help": "Volumes are logical volumes of a volume group; build creates the group.",
        "fields": ["source_name", "source_devices"],
        "required": ["source_name"],
    },
    "disk": {
        "label": "Physical disk",
        "help": "Volumes are partitions of a whole disk; build writes its partition table.",
        "fields": ["source_devices", "source_format", "target_path"],
        "required": ["source_devices"],
    },
    "iscsi": {
        "label": "iSCSI target",
        "help": "The LUNs of an iSCSI target, logged in through the host's initiator.",
        "fields": ["source_host", "source_port", "source_path", "target_path"],
        "required": ["source_host", "source_path"],
    },
    "iscsi-direct": {
        "label": "iSCSI direct (libiscsi)",
        "help": "LUNs reached by qemu itself, without the host's initiator.",
        "fields": ["source_host", "source_port", "source_path", "initiator"],
        "required": ["source_host", "source_path", "initiator"],
    },
    "scsi": {
        "label": "SCSI host adapter",
        "help": "The LUNs a SCSI (or Fibre Channel) host adapter sees.",
        "fields": ["adapter", "target_path"],
        "required": ["adapter"],
    },
    "mpath": {
        "label": "Multipath devices",
        "help": "The host's device-mapper multipath devices (read-only pool).",
        "fields": ["target_path"],
        "required": [],
    },
    "rbd": {
        "label": "Ceph RBD",
        "help": "Images in a Ceph RADOS pool, reached over the network by qemu.",
        "fields": ["source_host", "source_port", "source_name"],
        "required": ["source_host", "source_name"],
    },
    "gluster": {
        "label": "GlusterFS",
        "help": "A Gluster volume reached by qemu's native client.",
        "fields": ["source_host", "source_name", "source_path"],
        "required": ["source_host", "source_name"],
    },
    "zfs": {
        "label": "ZFS pool",
        "help": "Volumes are zvols of a ZFS pool; build creates it from the devices.",
        "fields": ["source_name", "source_devices"],
        "required": ["source_name"],
    },
}
SOURCE_FORMATS = {
    "fs": ["auto", "ext4", "ext3", "xfs", "btrfs", "vfat"],
    "netfs": ["nfs", "glusterfs", "cifs"],
    "disk": ["gpt", "dos"],
}
FIELD_LABELS = {
    "target_path": "Target path",
    "source_host": "Server",
    "source_port": "Port",
    "source_path": "Export / directory / target IQN",
    "source_devices": "Devices",
    "source_name": "Name (VG, RBD pool, Gluster volume, ZFS pool)",
    "source_format": "Format",
    "adapter": "SCSI adapter",
    "initiator": "Initiator IQN",
}


def validate_name(name: str, what: str, field: str = "name") -> str:
    """The name stripped, or ServiceError when it is empty, too long or unsafe as a file name."""
    name = (name or "").strip()
    if not name:
        raise ServiceError(f"Give the {what} a name.", field=field)
    if len(name) > NAME_MAX:
        raise ServiceError(f"The {what} name is longer than {NAME_MAX} characters.", field=field)
    if "\x00" in name or "/" in name or ".." in name or not NAME_RE.match(name):
        raise ServiceError(
            f"'{name[:40]}' is not a valid {what} name: use letters, digits, '.', '_', '+' "
            "and '-', start with a letter or digit, no '/' and no '..'.",
            field=field,
        )
    return name


def _clean_path(path: str, field: str) -> str:
    path = (path or "").strip()
    if "\x00" in path or not path.startswith("/") or os.path.normpath(path) != path.rstrip("/"):
        raise ServiceError(
            f"'{path[:80]}' is not a clean absolute path (no '..', no '//').", field=field
        )
    return os.path.normpath(path)


def allowed_path(path: str, field: str = "target_path") -> str:
    """A directory under one of the admin-allowed storage roots (PANEL_STORAGE_ROOTS)."""
    path = _clean_path(path, field)
    roots = [os.path.normpath(r) for r in settings.PANEL_STORAGE_ROOTS]
    if not any(path == r or path.startswith(r + "/") for r in roots):
        raise ServiceError(
            f"{path} is outside the directories allowed for storage ({', '.join(roots)}). "
            "Pick a path under one of them, or ask an admin to add a root "
            "(PANEL_STORAGE_ROOTS).",
            field=field,
        )
    return path


def _device(path: str, field: str) -> str:
    path = _clean_path(path, field)
    if not path.startswith("/dev/"):
        raise ServiceError(f"{path} is not a device path: use /dev/...", field=field)
    return path


def capacity_bytes(value: Any, field: str = "capacity_gib") -> int:
    """GiB (decimals allowed) as bytes rounded up to whole MiB; refuses zero, negative, absurd."""
    try:
        gib = float(value)
    except (TypeError, ValueError):
        raise ServiceError(
            "Give the size as a number of GiB, e.g. 10 or 0.5.", field=field
        ) from None
    if not math.isfinite(gib) or gib <= 0:
        raise ServiceError("The size must be more than 0 GiB.", field=field)
    if gib > MAX_CAPACITY_GIB:
        raise ServiceError(
            f"{gib:g} GiB is more than the {MAX_CAPACITY_GIB} GiB the panel allows for one volume.",
            field=field,
        )
    return math.ceil(gib * GIB / MIB) * MIB


def as_gib(n: int) -> str:
    """n bytes as GiB with two decimals, for messages."""
    return f"{n / GIB:.2f} GiB"


def clean_pool_spec(data: dict[str, Any]) -> hypervisor.PoolSpec:
    """A PoolSpec from form or API input, with exactly the fields the type needs."""
    kind = str(data.get("type") or "")
    if kind not in POOL_TYPES:
        raise ServiceError(
            f"Unknown pool type '{kind}': use one of {', '.join(POOL_TYPES)}.", field="type"
        )
    name = validate_name(str(data.get("name") or ""), "pool")
    info = POOL_TYPES[kind]
    given = data.get("source")
    source: dict[str, Any] = given if isinstance(given, dict) else {}
    values: dict[str, Any] = {}
    for key in info["fields"]:
        raw = data.get(key, source.get(key.removeprefix("source_"), source.get(key, "")))
        if key == "source_devices":
            items = (
                raw if isinstance(raw, list | tuple) else str(raw or "").replace(",", " ").split()
            )
            values[key] = tuple(_device(str(d), key) for d in items)
        elif key == "source_port":
            if raw is None or raw == "":
                continue
            try:
                port = int(raw)
            except (TypeError, ValueError):
                raise ServiceError("The port must be a number.", field=key) from None
            if not 0 < port < 65536:
                raise ServiceError("The port must be between 1 and 65535.", field=key)
            values[key] = port
        else:
            values[key] = str(raw or "").strip()
    for key in info["required"]:
        if not values.get(key):
            raise ServiceError(
                f"A {info['label']} pool needs {FIELD_LABELS[key].lower()}.", field=key
            )
    if values.get("target_path"):
        if kind in ("dir", "fs", "netfs"):
            values["target_path"] = allowed_path(values["target_path"])
        else:
            values["target_path"] = _clean_path(values["target_path"], "target_path")
    fmt = values.get("source_format")
    if fmt and fmt not in SOURCE_FORMATS.get(kind, []):
        raise ServiceError(
            f"'{fmt}' is not a format for a {info['label']} pool: use "
            f"{', '.join(SOURCE_FORMATS.get(kind, []))}.",
            field="source_format",
        )
    for key in ("source_host", "source_name", "source_path", "adapter", "initiator"):
        value = values.get(key, "")
        if value and (len(value) > 255 or any(c in value for c in "<>&\"'\x00 ")):
            raise ServiceError(
                f"{FIELD_LABELS[key]} contains characters that are not allowed.", field=key
            )
    return hypervisor.PoolSpec(name=name, type=kind, **values)
