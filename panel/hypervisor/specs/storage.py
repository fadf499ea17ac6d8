"""The values about storage: pools and volumes to define, and what libvirt reports of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolInfo:
    """A storage pool and its space, in bytes."""

    uuid: str
    name: str
    type: str
    state: str
    target_path: str
    capacity: int
    allocation: int
    available: int
    autostart: bool
    persistent: bool


@dataclass(frozen=True)
class PoolSpec:
    """A storage pool to define; which source fields matter depends on the type.

    source_host/source_port: the server (netfs, iscsi, iscsi-direct, rbd, gluster);
    source_path: the export or directory on it (netfs, gluster) or the target IQN
    (iscsi, iscsi-direct); source_devices: block devices (fs, logical, disk, zfs);
    source_name: a volume group, RBD pool, gluster volume or zfs pool;
    source_format: the filesystem (fs, netfs) or partition label (disk);
    adapter: the SCSI host adapter (scsi); initiator: our IQN (iscsi-direct).
    """

    name: str
    type: str
    target_path: str = ""
    source_host: str = ""
    source_port: int | None = None
    source_path: str = ""
    source_devices: tuple[str, ...] = ()
    source_name: str = ""
    source_format: str = ""
    adapter: str = ""
    initiator: str = ""


@dataclass(frozen=True)
class VolumeSpec:
    """A volume to create; preallocation is off, metadata, falloc or full."""

    name: str
    capacity: int
    format: str = "qcow2"
    preallocation: str = "off"
    backing_path: str = ""
    backing_format: str = ""


@dataclass(frozen=True)
class BackingInfo:
    """One image of a volume's backing chain."""

    path: str
    format: str


@dataclass(frozen=True)
class VolumeInfo:
    """A volume in a pool, sizes in bytes."""

    pool: str
    name: str
    key: str
    path: str
    format: str
    capacity: int
    allocation: int
    backing: tuple[BackingInfo, ...] = ()
    physical: int = 0  # bytes the file takes (a raw image's real size); 0: not reported
