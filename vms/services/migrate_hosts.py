"""What a migration takes from the two hosts' rows: where the target's QEMU listens for
it (its migration address, else the host part of its URI), and the directories both
hosts declare shared storage."""

from __future__ import annotations

from dataclasses import replace

from panel import hypervisor
from panel.models import Host
from storage.models import StoragePool


def shared_paths(source: Host, target: Host) -> tuple[str, ...]:
    """The directories of pools declared shared storage on both hosts, at the same path."""
    declared = StoragePool.objects.filter(shared_storage=True).exclude(target_path="")
    there = set(declared.filter(host=target).values_list("target_path", flat=True))
    here = declared.filter(host=source).values_list("target_path", flat=True)
    return tuple(sorted({path for path in here if path in there}))


def between(
    options: hypervisor.MigrationOptions, source: Host, target: Host
) -> hypervisor.MigrationOptions:
    """options with the migration URI, listen address and shared storage of these hosts."""
    uri, listen = hypervisor.migration_endpoint(source.uri, target.uri, target.migration_address)
    return replace(
        options,
        migration_uri=uri,
        listen_address=listen,
        shared_paths=shared_paths(source, target),
    )
