"""Hypervisor errors as service errors a user can read, for every app's services."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from . import hypervisor
from .exceptions import ConflictError, UnavailableError
from .models import Host


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
