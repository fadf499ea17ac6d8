"""Pool actions for admins: create (define, build, start), build/start/stop/refresh,
autostart and delete."""

from __future__ import annotations

import contextlib
from typing import Any

from django.db import transaction

from panel import audit
from panel.actors import Actor
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import Change, admin_change, on_host
from panel.hypervisor import storage as hv
from panel.models import Host
from panel.permissions import require_admin
from storage.models import StoragePool
from storage.services.common import vms_using
from storage.services.sync import refresh_pool_row, save_pool
from storage.services.validation import POOL_TYPES, clean_pool_spec


def create_pool(
    host: Host,
    data: dict[str, Any],
    *,
    actor: Actor,
    persistent: bool = True,
    build: bool = True,
    start: bool = True,
    autostart: bool = False,
) -> StoragePool:
    """Define (or create, if transient) a pool on host, optionally build and start it."""
    require_admin(actor.user, "create storage pools")
    with audit.refusals_recorded(actor, "pool.create", host):
        spec = clean_pool_spec(data)
        if StoragePool.objects.filter(host=host, name=spec.name).exists():
            raise ServiceError(f"{host.name} already has a pool named {spec.name}.", field="name")
        if spec.target_path and spec.type in ("dir", "fs", "netfs"):
            clash = StoragePool.objects.filter(host=host, target_path=spec.target_path).first()
            if clash is not None:
                raise ServiceError(
                    f"Pool {clash.name} already uses {spec.target_path}.", field="target_path"
                )
        with on_host(host, f"Pool {spec.name}"):
            caps = hv.pool_capabilities(host.uri)
            if caps and not caps.get(spec.type, False):
                raise ServiceError(
                    f"The libvirt on {host.name} cannot run {POOL_TYPES[spec.type]['label']} "
                    "pools (its storage driver for that type is not installed).",
                    field="type",
                )
            info = hv.define_pool(
                host.uri,
                spec,
                persistent=persistent,
                build=build,
                start=start or not persistent,
                autostart=autostart and persistent,
            )
        with transaction.atomic():
            pool = save_pool(host, info)
            audit.record(
                actor,
                "pool.create",
                pool,
                detail=f"{spec.type} {'persistent' if persistent else 'transient'}"
                + (f" at {spec.target_path}" if spec.target_path else ""),
            )
    if info.state == "active":
        refresh_pool_row(pool)
    return pool


POOL_ACTIONS = ("build", "start", "stop", "refresh")


def pool_action(pool: StoragePool, action: str, *, actor: Actor) -> StoragePool | None:
    """build, start, stop or refresh; None when a transient pool is gone after stop."""
    require_admin(actor.user, f"{action} storage pools")
    if action not in POOL_ACTIONS:
        raise ServiceError(f"Unknown pool action '{action}': use {', '.join(POOL_ACTIONS)}.")
    with _pool_change(pool, actor, f"pool.{action}", f"{action} storage pools") as change:
        with change.on_host():
            info = hv.pool_action(pool.host.uri, pool.name, action)
        with transaction.atomic():
            change.done()
            if info.state == "gone":
                pool.delete()
                return None
            pool = save_pool(pool.host, info)
    if info.state == "active":
        pool = refresh_pool_row(pool)
    return pool


# Pools whose volumes are files under one directory: the only ones the flag applies to.
SHARED_TYPES = ("dir", "fs", "netfs")


def set_pool_autostart(pool: StoragePool, on: bool, *, actor: Actor) -> StoragePool:
    """Turn the pool's autostart on or off."""
    with _pool_change(pool, actor, "pool.autostart", "change storage pools") as change:
        with change.on_host():
            info = hv.set_pool_autostart(pool.host.uri, pool.name, on)
        with transaction.atomic():
            pool = save_pool(pool.host, info)
            change.done("on" if on else "off")
    return pool


def set_pool_shared_storage(pool: StoragePool, on: bool, *, actor: Actor) -> StoragePool:
    """Declare the pool's directory shared storage (every host with a pool at the same
    path sees the same files), or take that back. A running VM whose disks all sit in
    such pools on both hosts then migrates live without copying them."""
    with _pool_change(pool, actor, "pool.shared_storage", "change storage pools") as change:
        if on and pool.type not in SHARED_TYPES:
            raise ServiceError(
                f"Pool {pool.name} is a {pool.type} pool: only directory, file system and "
                "network file system pools can be declared shared storage.",
                field="shared_storage",
            )
        with transaction.atomic():
            StoragePool.objects.filter(pk=pool.pk).update(shared_storage=on)
            pool.shared_storage = on
            change.done("declared shared storage" if on else "local storage")
    return pool


def delete_pool(pool: StoragePool, *, actor: Actor, delete_target: bool = False) -> None:
    """Stop and undefine the pool; its directory (or VG) is removed only when asked."""
    with _pool_change(pool, actor, "pool.delete", "delete storage pools") as change:
        users = vms_using(pool.host, [v.path for v in pool.volumes.all() if v.path])
        if users:
            raise ConflictError(
                f"Pool {pool.name} holds disks of {', '.join(sorted(users))}: "
                "detach or delete those first."
            )
        if delete_target and pool.volumes.exists():
            raise ConflictError(
                f"Pool {pool.name} still has {pool.volumes.count()} volumes: delete them "
                "before deleting the pool's directory, or keep the directory."
            )
        with change.on_host():
            hv.delete_pool(pool.host.uri, pool.name, delete_target=delete_target)
        with transaction.atomic():
            change.done("target deleted" if delete_target else "target kept")
            pool.delete()


def _pool_change(
    pool: StoragePool, actor: Actor, action: str, what: str
) -> contextlib.AbstractContextManager[Change]:
    """The frame of a change to pool (admins only): see panel.hostcalls.changing."""
    return admin_change(actor, action, pool, host=pool.host, label=f"Pool {pool.name}", what=what)
