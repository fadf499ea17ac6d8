"""Networks as admins manage them: create one of any mode, start, stop, autostart, delete."""

from __future__ import annotations

import contextlib
from typing import Any

from django.db import transaction

from networking.choices import NetworkMode
from networking.models import Network
from networking.services.checks import (
    DEVICE_MODES,
    HOSTNAME_RE,
    IP_MODES,
    NAME_RE,
    IPNetwork,
    check_devices,
    check_host_addresses,
    dns_entries,
    interfaces_by_name,
    ip_config,
    network_subnets,
)
from networking.services.inventory import on_network, refresh_networks, sync_network
from networking.services.leases import vms_on_network
from panel import audit, hypervisor
from panel.actors import Actor
from panel.exceptions import ConflictError, ServiceError, UnavailableError
from panel.hostcalls import Change, changing, on_host
from panel.models import Host
from panel.permissions import require_admin

# Why only administrators change networks.
INFRASTRUCTURE = "networks are infrastructure"


def create_network(
    host: Host,
    *,
    name: str,
    mode: str,
    actor: Actor,
    bridge: str = "",
    dev: str = "",
    macvtap_mode: str = "bridge",
    ipv4: dict[str, Any] | None = None,
    ipv6: dict[str, Any] | None = None,
    dhcp_hosts: list[dict[str, Any]] | None = None,
    dns_hosts: list[dict[str, Any]] | None = None,
    domain: str = "",
    mtu: int | None = None,
    autostart: bool = False,
    start: bool = True,
) -> Network:
    """Define a network of any mode on host (admins), start it and set autostart."""
    require_admin(actor.user, "create networks", INFRASTRUCTURE)
    name, bridge, dev = (name or "").strip(), (bridge or "").strip(), (dev or "").strip()
    domain = (domain or "").strip()
    with audit.refusals_recorded(actor, "network.create", f"{name} on {host.name}"):
        _check_name_and_mode(host, name, mode, macvtap_mode)
        ips, subnets = _ip_configs(ipv4, ipv6, list(dhcp_hosts or []))
        _check_addressing(mode, ips, dns_hosts, domain)
        _check_subnets_free(host, subnets)
        bridge, dev = _checked_devices(host, mode, name, bridge, dev, subnets)
        if domain and not HOSTNAME_RE.match(domain):
            raise ServiceError(
                f"'{domain}' is not a domain name: use e.g. lab.example.", field="domain"
            )
        spec = hypervisor.NetworkSpec(
            name=name,
            mode=mode,
            bridge=bridge,
            dev=dev,
            macvtap_mode=macvtap_mode,
            ips=tuple(ips),
            mtu=_checked_mtu(mtu),
            dns_hosts=dns_entries(list(dns_hosts or [])),
            domain=domain,
        )
        info = _define(host, spec, start=start, autostart=autostart)
        with transaction.atomic():
            network = sync_network(host, info)
            audit.record(
                actor,
                "network.create",
                network,
                detail=f"{mode}, bridge {info.bridge or '-'}, "
                + ", ".join(f"{ip.address}/{ip.prefix}" for ip in ips),
            )
    return network


def _check_name_and_mode(host: Host, name: str, mode: str, macvtap_mode: str) -> None:
    """Refuse a bad name or mode, a down host, and a name the host's networks already have."""
    if not NAME_RE.match(name):
        raise ServiceError(
            "Name the network with 1 to 50 letters, digits, '-', '_' or '.', starting "
            "with a letter or digit.",
            field="name",
        )
    if mode not in NetworkMode.values:
        raise ServiceError(
            f"Unknown mode '{mode}': use one of {', '.join(NetworkMode.values)}.", field="mode"
        )
    if mode == NetworkMode.MACVTAP and macvtap_mode not in hypervisor.MACVTAP_MODES:
        raise ServiceError(
            f"Unknown macvtap mode '{macvtap_mode}': use one of "
            f"{', '.join(hypervisor.MACVTAP_MODES)}.",
            field="macvtap_mode",
        )
    if not host.is_up:
        raise UnavailableError(f"{host.name} is down: networks can only be created on an up host.")
    refresh_networks(host)
    if Network.objects.filter(host=host, name=name).exists():
        raise ServiceError(
            f"{host.name} already has a network named '{name}': choose another name.",
            field="name",
        )


def _ip_configs(
    ipv4: dict[str, Any] | None, ipv6: dict[str, Any] | None, hosts: list[dict[str, Any]]
) -> tuple[list[hypervisor.IPConfig], list[IPNetwork]]:
    """The network's IPv4 and IPv6 configs (those given) and their subnets."""
    ips: list[hypervisor.IPConfig] = []
    subnets: list[IPNetwork] = []
    for family, data in (("ipv4", ipv4), ("ipv6", ipv6)):
        config, net = ip_config(family, data, hosts)
        if config is not None:
            ips.append(config)
            subnets.append(net)
    if hosts and not any(ip.family == "ipv4" for ip in ips):
        raise ServiceError(
            "Static DHCP hosts need an IPv4 address for the network.", field="dhcp_hosts"
        )
    return ips, subnets


def _check_addressing(
    mode: str, ips: list[hypervisor.IPConfig], dns_hosts: list[Any] | None, domain: str
) -> None:
    """Refuse addresses a mode needs but lacks, or has but cannot use (it takes the LAN's)."""
    if mode in IP_MODES:
        if mode == NetworkMode.NAT and not any(ip.family == "ipv4" for ip in ips):
            raise ServiceError(
                "A NAT network needs an IPv4 address and prefix (e.g. 10.213.5.1/24): "
                "NAT masquerades IPv4.",
                field="ipv4",
            )
        if mode in (NetworkMode.ROUTED, NetworkMode.OPEN) and not ips:
            raise ServiceError(
                f"A {mode} network needs an IPv4 or IPv6 subnet to route.", field="ipv4"
            )
    elif ips or dns_hosts or domain:
        raise ServiceError(
            f"A {mode} network takes its addresses from the LAN, not from libvirt: leave "
            "IPv4, IPv6, DHCP, DNS and domain empty.",
            field="ipv4" if ips else ("dns_hosts" if dns_hosts else "domain"),
        )


def _check_subnets_free(host: Host, subnets: list[IPNetwork]) -> None:
    """Refuse a subnet that overlaps one of another network on host."""
    for other in Network.objects.filter(host=host):
        for mine in subnets:
            for theirs in network_subnets(other):
                if mine.version == theirs.version and mine.overlaps(theirs):
                    raise ServiceError(
                        f"The subnet {mine} overlaps {theirs} of network '{other.name}' on "
                        f"{host.name}: pick a subnet no other network uses.",
                        field=f"ipv{mine.version}",
                    )


def _checked_devices(
    host: Host, mode: str, name: str, bridge: str, dev: str, subnets: list[IPNetwork]
) -> tuple[str, str]:
    """The bridge and device the mode names, checked against the host's interfaces (whose
    addresses the subnets must not overlap either)."""
    interfaces = interfaces_by_name(host)
    check_host_addresses(host, subnets, interfaces)
    if mode in DEVICE_MODES:
        bridge = ""  # macvtap and hostdev networks have no bridge
    if mode not in (NetworkMode.NAT, NetworkMode.ROUTED, *DEVICE_MODES):
        dev = ""  # only NAT/routed uplinks and macvtap/SR-IOV devices name one
    check_devices(host, mode, bridge, dev, name, interfaces)
    return bridge, dev


def _checked_mtu(mtu: Any) -> int | None:
    """The MTU as a number of bytes, or None (empty: libvirt's default)."""
    if mtu in (None, ""):
        return None
    try:
        mtu = int(mtu)
    except (TypeError, ValueError):
        mtu = -1
    if not 68 <= mtu <= 65535:
        raise ServiceError("The MTU is a number of bytes from 68 to 65535.", field="mtu")
    return mtu


def _define(
    host: Host, spec: hypervisor.NetworkSpec, *, start: bool, autostart: bool
) -> hypervisor.NetworkInfo:
    """Define the network on host (and start it, set autostart); libvirt's refusal is a 400."""
    try:
        return hypervisor.define_network(host.uri, spec, start=start, autostart=autostart)
    except hypervisor.HostUnavailable as exc:
        raise UnavailableError(f"{host.name} cannot be reached: {exc}") from exc
    except hypervisor.HypervisorError as exc:
        raise ServiceError(f"libvirt refused the network: {exc}. Nothing was created.") from exc


NETWORK_ACTIONS = ("start", "stop")


def network_action(network: Network, action: str, *, actor: Actor) -> Network:
    """Start or stop a network (admins)."""
    require_admin(actor.user, f"{action} networks", INFRASTRUCTURE)
    if action not in NETWORK_ACTIONS:
        raise ServiceError(f"Unknown action '{action}': use start or stop.")
    with _network_change(network, actor, f"network.{action}", f"{action} networks") as change:
        with change.on_host(f"Could not {action} '{network.name}'"):
            call = hypervisor.start_network if action == "start" else hypervisor.stop_network
            info = call(network.host.uri, network.name)
        with transaction.atomic():
            network = sync_network(network.host, info)
            change.done()
    return network


def set_network_autostart(network: Network, enabled: bool, *, actor: Actor) -> Network:
    """Start (or not) the network when libvirtd starts (admins)."""
    with _network_change(network, actor, "network.autostart", "change networks") as change:
        with change.on_host(f"Could not change autostart of '{network.name}'"):
            info = hypervisor.set_network_autostart(network.host.uri, network.name, enabled)
        with transaction.atomic():
            network = sync_network(network.host, info)
            change.done("on" if enabled else "off")
    return network


def delete_network(network: Network, *, actor: Actor) -> None:
    """Stop and undefine a network no VM uses (admins); one already gone from its host
    is deleted here too."""
    with _network_change(network, actor, "network.delete", "delete networks") as change:
        users = sorted({vm.name for vm, _nic in vms_on_network(network)})
        if users:
            raise ConflictError(
                f"'{network.name}' is used by {', '.join(users)}: detach their NICs from it "
                "first, or they could not start again."
            )
        with on_host(network.host, f"Could not delete '{network.name}'"):
            with contextlib.suppress(hypervisor.NotFound):
                hypervisor.delete_network(network.host.uri, network.name)
        with transaction.atomic():
            change.done()
            network.delete()


class NetworkChange(Change):
    """A change to a network: one its host no longer has leaves the list (on_network)."""

    def on_host(self, failed: str | None = None) -> contextlib.AbstractContextManager[None]:
        return on_network(self.target, failed or self.label)


def _network_change(
    network: Network, actor: Actor, action: str, what: str
) -> contextlib.AbstractContextManager[Change]:
    """The frame of a change to network (admins only): see panel.hostcalls.changing."""
    require_admin(actor.user, what, INFRASTRUCTURE)
    label = f"Network '{network.name}'"
    return changing(NetworkChange(actor, action, network, network.host, label))
