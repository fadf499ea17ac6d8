"""The HA monitor (`manage.py ha_monitor`; see vms.services.ha): one process that, every
renew interval, reaches each fenced host and acts on what it finds.

- agent fencing: it renews the panel's lease on the host (`panel-ha-agent renew
  FENCE_SECONDS` over SSH with the panel's key and the host's pinned key). Renewed: the
  host is reached. Not reached for lost_seconds() since the last renewal: its agent has
  stopped its HA VMs by then, so they are restarted elsewhere (jobs run here: HA does
  not wait on the job queue). A reachable host whose agent does not watch is noted and
  not armed: its VMs would not be restarted, since nothing would have stopped them.
- manual fencing: it only notes when it last reached the host, which the admin's
  confirmation that the host is off is checked against.

A host reached again after a failover gets its stale copies of the restarted VMs
undefined. Stopping cleanly releases the leases, so the agents fence nothing while no
monitor renews them.

One monitor acts at a time: each pass first holds the leader lock in Redis (a lock of
redis-py, that lapses LEADER_PASSES renew intervals after the last pass of a monitor
that died), and a second monitor stands by until it can take it.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from redis.exceptions import LockError
from redis.lock import Lock

from panel import hypervisor, redis_client, sshkeys
from panel.actors import Actor
from panel.choices import HostFencing, JobKind
from panel.models import Host, Job
from vms.models import VirtualMachine
from vms.services import failover, ha

log = logging.getLogger(__name__)

NOT_WATCHING = 3  # panel-ha-agent renew: the agent's loop does not run
# How often the HA VMs' definitions are read again from their hosts.
REFRESH_SECONDS = 30
# The leader lock lapses after this many renew intervals without a pass.
LEADER_PASSES = 3


def agent(*args: str) -> str:
    """The agent's command line on a host."""
    return shlex.join([str(settings.PANEL_HA_AGENT), *args])


def reach(host: Host) -> sshkeys.RemoteResult:
    """Renew the lease on an agent-fenced host; only look at a manually fenced one."""
    timeout = max(2.0, float(ha.renew_seconds()))
    if host.fencing == HostFencing.AGENT:
        command = agent("renew", str(ha.fence_seconds()))
    elif hypervisor.is_ssh(host.uri):
        command = "true"
    else:
        try:
            hypervisor.list_domains(host.uri)
        except hypervisor.HypervisorError as exc:
            return sshkeys.RemoteResult(None, str(exc))
        return sshkeys.RemoteResult(0, "")
    try:
        return sshkeys.run_remote(host.uri, command, timeout=timeout)
    except sshkeys.SSHKeyError as exc:
        return sshkeys.RemoteResult(None, str(exc))


def refresh_definitions(host: Host) -> None:
    """Mark the host's HA VMs again and keep their definitions as they are now (a change
    of memory, a disk added, a migration here): what a restart elsewhere defines."""
    for vm in VirtualMachine.objects.filter(host=host, ha=True):
        try:
            definition = hypervisor.mark_ha(host.uri, str(vm.pk), True)
        except hypervisor.HypervisorError as exc:
            log.warning("could not read the definition of %s on %s: %s", vm, host, exc)
            continue
        if definition != vm.ha_definition:
            VirtualMachine.objects.filter(pk=vm.pk, ha=True).update(ha_definition=definition)


def _reached(host: Host, result: sshkeys.RemoteResult) -> None:
    now = timezone.now()
    if result.returncode == 0:
        host.ha_reached_at, host.ha_note = now, ""
    elif result.returncode == NOT_WATCHING:
        host.ha_reached_at = None
        host.ha_note = (
            "The HA agent does not run on this host: its HA VMs would not be stopped if "
            "it were lost, so they will not be restarted elsewhere. Start panel-ha-agent."
        )
    else:
        host.ha_reached_at = None
        host.ha_note = f"The HA agent's renewal failed: {result.output}"[:500]
    host.save(update_fields=["ha_reached_at", "ha_note"])
    if host.fenced_at is not None and result.returncode == 0:
        forget_stale_copies(host)


def forget_stale_copies(host: Host) -> None:
    """The definitions a lost host still has of the VMs restarted elsewhere since."""
    restarted = Job.objects.filter(
        kind=JobKind.VM_HA_RESTART, host=host, created__gte=host.fenced_at
    ).values_list("result__vm", flat=True)
    for vm in VirtualMachine.objects.filter(pk__in=list(restarted)).exclude(host=host):
        try:
            if hypervisor.forget_stale_copy(host.uri, str(vm.pk)):
                log.info("undefined the stale copy of %s on %s", vm.name, host.name)
        except hypervisor.HypervisorError as exc:
            log.warning("could not undefine the stale copy of %s on %s: %s", vm, host, exc)
            return
    host.fenced_at = None
    host.save(update_fields=["fenced_at"])


def _unreached(host: Host, result: sshkeys.RemoteResult) -> None:
    if host.ha_reached_at is None:
        return  # never armed (or released): nothing says its VMs were stopped
    ago = (timezone.now() - host.ha_reached_at).total_seconds()
    host.ha_note = f"Unreached for {int(ago)} s: {result.output}"[:500]
    host.save(update_fields=["ha_note"])
    fenced_since = host.fenced_at is not None and host.fenced_at > host.ha_reached_at
    if host.fencing != HostFencing.AGENT or ago <= ha.lost_seconds() or fenced_since:
        return
    why = f"unreached for {int(ago)} s, its agent stopped its HA VMs after {ha.fence_seconds()} s"
    log.warning("host %s is lost (%s): restarting its HA VMs elsewhere", host.name, why)
    failover.fail_over(host, actor=Actor(None), why=why, inline=True)


def check(host_id: int, refresh: bool = False) -> None:
    """One look at one host: reached or not, and what follows; with refresh, the
    definitions of its HA VMs read again when it was reached."""
    try:
        host = Host.objects.filter(pk=host_id).exclude(fencing="").first()
        if host is None:
            return
        result = reach(host)
        if result.reached:
            _reached(host, result)
            if refresh and result.returncode == 0:
                refresh_definitions(host)
        else:
            _unreached(host, result)
    finally:
        connection.close()  # this pool thread's own connection: not held between passes


class Monitor:
    """Looks at every fenced host each renew interval, several at a time."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.refreshed_at = -float(REFRESH_SECONDS)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ha")
        self.leader = Lock(
            redis_client.client(timeout=5),
            cache.make_key("ha-monitor-leader"),
            timeout=LEADER_PASSES * max(1.0, float(ha.renew_seconds())),
        )
        self.leading = False

    def lead(self) -> bool:
        """Whether this monitor acts this pass: it holds the leader lock, taken or kept.
        While Redis cannot be reached a leader goes on (no other monitor can take the
        lock then either), since leases left to run out would fence every HA VM."""
        try:
            if self.leading and self.leader.owned():
                self.leader.reacquire()
            else:
                if self.leading:
                    log.warning("HA monitor: the leader lock lapsed; taking it again")
                self.leading = bool(self.leader.acquire(blocking=False))
        except redis.RedisError as exc:
            log.warning(
                "HA monitor: Redis unreachable (%s); %s",
                exc,
                "going on as the leader" if self.leading else "standing by",
            )
        return self.leading

    def tick(self) -> None:
        ids = list(Host.objects.exclude(fencing="").values_list("pk", flat=True))
        now = time.monotonic()
        refresh = now - self.refreshed_at >= REFRESH_SECONDS
        if refresh:
            self.refreshed_at = now
        for future in [self.pool.submit(check, pk, refresh) for pk in ids]:
            future.result()

    def run(self) -> None:
        log.info(
            "HA monitor: renewing every %s s, fence after %s s",
            ha.renew_seconds(),
            ha.fence_seconds(),
        )
        while not self.stopping.is_set():
            started = timezone.now()
            try:
                if self.lead():
                    self.tick()
            except Exception:  # noqa: BLE001 - the monitor keeps going; the next tick retries
                log.warning("HA monitor pass failed", exc_info=True)
            spent = (timezone.now() - started).total_seconds()
            self.stopping.wait(max(0.2, ha.renew_seconds() - spent))
        self.step_down()
        self.pool.shutdown(wait=True)
        connection.close()

    def step_down(self) -> None:
        """A leader's end: its leases released, then its lock, for a standby to take."""
        if not self.leading:
            return
        self.release()
        with contextlib.suppress(redis.RedisError, LockError):
            self.leader.release()
        self.leading = False

    def stop(self) -> None:
        self.stopping.set()

    def release(self) -> None:
        """Give up the leases: the agents fence nothing until a monitor renews again."""
        for host in Host.objects.filter(fencing=HostFencing.AGENT):
            try:
                sshkeys.run_remote(host.uri, agent("release"), timeout=5)
            except sshkeys.SSHKeyError:
                continue
            Host.objects.filter(pk=host.pk).update(ha_reached_at=None)
