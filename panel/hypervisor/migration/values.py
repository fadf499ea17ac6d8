"""What a migration is told and what it tells back: its options, progress readings, the
disks it copies and its result, with the constants the migration modules share.

These values live here rather than in specs.py: nothing but migration uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from panel.hypervisor.specs import DomainInfo

COPY_MODES = ("", "all", "incremental")
POLL_SECONDS = 0.5
CHUNK = 1024 * 1024
# In a disk check's detail: the disk would migrate with storage copy chosen.
NEEDS_COPY = "not on storage the target sees"
# How long an aborted migration may take to unwind before we call it stuck.
ABORT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class MigrationOptions:
    """How to migrate. copy_storage: "" (shared storage), "all" or "incremental";
    target_pool: the pool on the target where copied disks are created first.
    bandwidth_mib: MiB/s, 0 for no limit. migration_uri: where the target's QEMU
    listens (tcp://address[:port]); empty lets libvirt use the target's hostname.
    listen_address: the one address the target's QEMU listens on for it (empty: libvirt's
    default, every interface). shared_paths: directories declared shared storage on both
    hosts: a live migration whose disks not copied all sit under them is told it is safe
    (VIR_MIGRATE_UNSAFE), as libvirt cannot tell such storage apart from a local disk.
    tls: the memory and disk streams go over TLS (QEMU's, with each host's certificates
    in /etc/pki/qemu), for a migration network the panel does not trust."""

    live: bool = True
    persistent: bool = True
    undefine_source: bool = True
    copy_storage: str = ""
    target_pool: str = ""
    auto_converge: bool = False
    post_copy: bool = False
    bandwidth_mib: int = 0
    migration_uri: str = ""
    listen_address: str = ""
    shared_paths: tuple[str, ...] = ()
    tls: bool = False


@dataclass(frozen=True)
class MigrationProgress:
    """One reading of the migration job's statistics, in bytes and milliseconds."""

    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    memory_iteration: int = 0
    elapsed_ms: int = 0
    post_copy: bool = False

    @property
    def percent(self) -> int:
        """Share of the data sent so far, 0-99 (100 only once the domain runs on the target)."""
        total = self.data_processed + self.data_remaining
        if total <= 0:
            return 0
        return min(99, int(100 * self.data_processed / total))


@dataclass(frozen=True)
class DiskCopy:
    """A disk copied to the target: its device, path on each side, format and size."""

    target: str
    source: str
    dest: str
    format: str
    capacity: int


@dataclass(frozen=True)
class MigrationResult:
    """The domain as the target now runs it, and the disks copied there."""

    info: DomainInfo
    copied: tuple[DiskCopy, ...] = ()
    removed_source: tuple[str, ...] = ()


Progress = Callable[[MigrationProgress], None]


def default_migration_uri(source_uri: str, target_uri: str) -> str:
    """tcp://<target address>, where the target's address is its URI's host; for a local
    target, the loopback address when the source is on this machine too. The port is left
    to the target's libvirtd, which takes a free one from its migration port range."""
    target = urlsplit(target_uri).hostname
    if target:
        return f"tcp://{target}" if ":" not in target else f"tcp://[{target}]"
    source = urlsplit(source_uri).hostname
    if source in (None, "127.0.0.1", "localhost", "::1"):
        return "tcp://127.0.0.1"
    return ""


def migration_endpoint(source_uri: str, target_uri: str, address: str = "") -> tuple[str, str]:
    """(migration URI, listen address) of a migration to the target: tcp://address when
    the target has a migration address, else default_migration_uri(); the target's QEMU
    listens on that URI's host alone (none when there is no URI)."""
    uri = (
        (f"tcp://[{address}]" if ":" in address else f"tcp://{address}")
        if address
        else default_migration_uri(source_uri, target_uri)
    )
    return uri, (urlsplit(uri).hostname or "") if uri else ""


def under_shared_paths(path: str, shared_paths: tuple[str, ...] | list[str]) -> bool:
    """Whether path is a file inside one of the directories declared shared storage."""
    return any(path.startswith(d.rstrip("/") + "/") for d in shared_paths if d)
