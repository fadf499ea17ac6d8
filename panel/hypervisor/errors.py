"""Our own exceptions for everything that goes wrong below the boundary.

Callers never see libvirt.libvirtError: each carries the libvirt message so a
page can show it, and the class says what the caller can do about it.
"""

from __future__ import annotations


class HypervisorError(Exception):
    """Something libvirt refused or failed at; the message is libvirt's."""


class HostUnavailable(HypervisorError):
    """The host's libvirtd cannot be reached (down, refused, timed out)."""


class NotFound(HypervisorError):
    """The domain, pool, volume or network does not exist on that host."""


class Conflict(HypervisorError):
    """The object is in a state that does not allow this (e.g. already running)."""


class InvalidURI(HypervisorError):
    """The connection URI is not one the panel accepts."""


class InvalidValue(HypervisorError, ValueError):
    """A value cannot go into libvirt's XML (e.g. it holds NUL or a control character)."""
