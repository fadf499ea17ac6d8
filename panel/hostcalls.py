"""Hypervisor errors as service errors a user can read, for every app's services."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import hypervisor
from .exceptions import ConflictError, UnavailableError
from .models import Host


@contextlib.contextmanager
def on_host(host: Host, what: str, *, gone: str | None = None) -> Iterator[None]:
    """Calls to host about `what` (a pool, a volume...): a refusal is 409 naming it with
    libvirt's reason, an unreachable host 503, an object the host no longer has 409
    with `gone` (default: "<what> is no longer on <host>")."""
    try:
        yield
    except hypervisor.NotFound as exc:
        raise ConflictError(gone or f"{what} is no longer on {host.name}: {exc}") from exc
    except hypervisor.HostUnavailable as exc:
        raise UnavailableError(f"{host.name} cannot be reached: {exc}") from exc
    except hypervisor.HypervisorError as exc:
        raise ConflictError(f"{what}: {exc}") from exc
