"""Hypervisor errors as service errors a user can read, for every app's services, and the
frame of a change to an object of a host (changing, admin_change)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from . import audit, hypervisor
from .actors import Actor
from .exceptions import ConflictError, UnavailableError
from .models import Host
from .permissions import require_admin


@contextlib.contextmanager
def on_host(
    host: Host,
    what: str,
    *,
    gone: str | None = None,
    forget: Callable[[], object] | None = None,
) -> Iterator[None]:
    """Calls to host about `what` (a VM, a pool, a network...): a refusal is 409 naming it
    with libvirt's reason, an unreachable host 503, an object the host no longer has 409
    with `gone` (default: "<what> is no longer on <host>: <reason>"), once `forget` (if
    given) has put the panel's record right (the VM marked missing, the row removed)."""
    try:
        yield
    except hypervisor.NotFound as exc:
        if forget is not None:
            forget()
        raise ConflictError(gone or f"{what} is no longer on {host.name}: {exc}") from exc
    except hypervisor.HostUnavailable as exc:
        raise UnavailableError(f"{host.name} cannot be reached: {exc}") from exc
    except hypervisor.HypervisorError as exc:
        raise ConflictError(f"{what}: {exc}") from exc


class Change:
    """A change being made to one object of a host, a pool, a volume or a network (see
    changing): the host's calls and the audit row of what was done."""

    def __init__(self, actor: Actor, action: str, target: Any, host: Host, label: str) -> None:
        self.actor, self.action, self.target = actor, action, target
        self.host, self.label = host, label

    def on_host(self, failed: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Around the hypervisor calls: their errors as a user reads them (on_host), about
        failed (default: the object's label, e.g. "Pool images")."""
        return on_host(self.host, failed or self.label)

    def done(self, detail: str = "") -> None:
        """The change audited; inside the transaction that writes its rows."""
        audit.record(self.actor, self.action, self.target, detail=detail)


C = TypeVar("C", bound=Change)


@contextlib.contextmanager
def changing(change: C) -> Iterator[C]:
    """The frame of change, once the actor's right was checked: a refusal inside (bad
    input, a busy object, the host's) is audited as its action after the rollback; the
    body calls the host within change.on_host() and ends with change.done()."""
    with audit.refusals_recorded(change.actor, change.action, change.target):
        yield change


def admin_change(
    actor: Actor, action: str, target: Any, *, host: Host, label: str, what: str, because: str = ""
) -> contextlib.AbstractContextManager[Change]:
    """The frame of a change only administrators may make (403 naming what, and why)."""
    require_admin(actor.user, what, because)
    return changing(Change(actor, action, target, host, label))
