"""What the panel checks before it connects where a user pointed it (an install tree, a
library image, a webhook): whether an address is inside (anything but a global unicast
address, seen through the IPv4 address an IPv6 one may carry), and a connection pool to
the very address that was checked, speaking to it by the URL's host name (TLS included),
so that a name answering differently at the connection (DNS rebinding) gains nothing."""

from __future__ import annotations

import ipaddress
import ssl

import urllib3

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64's well-known prefix: its addresses stand for the IPv4 address in their last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64 or the old
    IPv4-compatible form), if any."""
    found = address.ipv4_mapped or address.sixtofour
    if found is None and address.teredo:
        found = address.teredo[1]
    if found is None and (address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 1)):
        found = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return found


def internal_address(address: Address) -> bool:
    """Whether the panel must not connect to address on a user's word: anything but a
    global unicast address, looking through IPv4 addresses carried inside IPv6 ones."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded(address)
        if embedded is not None:
            return internal_address(embedded)
    return (
        not address.is_global
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


def pinned_pool(
    scheme: str, hostname: str, port: int, address: str, *, connect: float, read: float
) -> urllib3.HTTPConnectionPool:
    """A connection pool to the checked address, speaking to it as hostname (the Host
    header is the caller's; TLS checks the certificate against hostname)."""
    timeout = urllib3.Timeout(connect=connect, read=read)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            ssl_context=ssl.create_default_context(),
            server_hostname=hostname,
            assert_hostname=hostname,
        )
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
