"""Actions on virtual networks; the inventory sync lives here too.

Networks are infrastructure: admins create, start, stop and delete them; a VM's
NICs are in vms.nics. Every input is checked before anything reaches libvirt, so a
refusal leaves the host as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from panel import audit, hypervisor, rows
from panel.exceptions import ConflictError, GoneError, ServiceError, UnavailableError
from panel.hostcalls import on_host
from panel.models import Host
from panel.permissions import VIEW, is_admin, require_admin, restrict
from vms.models import VirtualMachine

from .choices import NetworkMode
from .models import Network

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}\Z")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
IP_MODES = {NetworkMode.NAT, NetworkMode.ROUTED, NetworkMode.ISOLATED, NetworkMode.OPEN}
DEVICE_MODES = {NetworkMode.MACVTAP, NetworkMode.HOSTDEV}


# --- the inventory ------------------------------------------------------------------------


def _row_fields(info: hypervisor.NetworkInfo) -> dict[str, object]:
    return {
        "uuid": info.uuid or None,
        "mode": info.mode,
        "forward_mode": info.forward_mode,
        "bridge": info.bridge,
        "dev": info.dev,
        "active": info.active,
        "autostart": info.autostart,
        "persistent": info.persistent,
        "ipv4": info.ipv4,
        "ipv6": info.ipv6,
        "mtu": info.mtu,
        "domain_name": info.domain,
        "dhcp_hosts": [dataclasses.asdict(h) for h in info.dhcp_hosts],
        "dns_hosts": [{"ip": h.ip, "hostnames": list(h.hostnames)} for h in info.dns_hosts],
        "xml": info.xml,
    }


def sync_network(host: Host, info: hypervisor.NetworkInfo) -> Network:
    """Create or update one network row from what the host reports."""
    network, _ = Network.objects.update_or_create(
        host=host, name=info.name, defaults={**_row_fields(info), "synced": timezone.now()}
    )
    return network


def sync_networks(host: Host, networks: Iterable[hypervisor.NetworkInfo]) -> dict[str, int]:
    """Make the host's network rows match what it reports."""
    networks = list(networks)
    with transaction.atomic():
        for info in networks:
            sync_network(host, info)
        Network.objects.filter(host=host).exclude(name__in=[n.name for n in networks]).delete()
    return {"networks": len(networks)}


def refresh_networks(host: Host) -> None:
    """Read the host's networks now (before checks that must see every one of them)."""
    with on_host(host, f"Could not read the networks of {host.name}"):
        sync_networks(host, hypervisor.list_networks(host.uri))


# --- input checks ---------------------------------------------------------------------------


def normalize_mac(value: str, field: str = "mac") -> str:
    """A MAC as aa:bb:cc:dd:ee:ff, or a ServiceError saying what is wrong with it."""
    mac = (value or "").strip().lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise ServiceError(
            f"'{value}' is not a MAC address: write six pairs of hex digits separated by "
            "colons, e.g. 52:54:00:12:34:56.",
            field=field,
        )
    if int(mac[:2], 16) & 1:
        raise ServiceError(
            f"{mac} is a multicast address: a NIC needs a unicast MAC (an even first byte), "
            "e.g. 52:54:00:12:34:56.",
            field=field,
        )
    if mac == "00:00:00:00:00:00":
        raise ServiceError("00:00:00:00:00:00 is not a usable MAC address.", field=field)
    return mac


def _ip(value: str, field: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network, what: str):  # type: ignore[no-untyped-def]
    try:
        addr = ipaddress.ip_address((value or "").strip())
    except ValueError:
        raise ServiceError(f"The {what} '{value}' is not an IP address.", field=field) from None
    if addr not in net:
        raise ServiceError(
            f"The {what} {addr} is outside the subnet {net}: pick an address inside it.",
            field=field,
        )
    if (
        net.version == 4
        and net.prefixlen < 31
        and addr in (net.network_address, net.broadcast_address)
    ):
        raise ServiceError(
            f"The {what} {addr} is the subnet's network or broadcast address: pick a host "
            "address inside it.",
            field=field,
        )
    return addr


def _ip_config(family: str, data: dict[str, Any] | None, hosts: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """An IPConfig from form/API values, or None when no address was given."""
    data = dict(data or {})
    address = str(data.get("address") or "").strip()
    if not address:
        if data.get("dhcp_start") or data.get("dhcp_end") or (hosts and family == "ipv4"):
            raise ServiceError(
                f"A DHCP range or static hosts need the network's {family} address: give "
                "the address and prefix too.",
                field=family,
            )
        return None, None
    label = "IPv4" if family == "ipv4" else "IPv6"
    example = "10.213.5.1 with prefix 24" if family == "ipv4" else "fd00:213:5::1 with prefix 64"
    prefix = data.get("prefix")
    if "/" in address:
        address, _, cidr_prefix = address.partition("/")
        prefix = prefix or cidr_prefix
    try:
        iface = ipaddress.ip_interface(f"{address}/{int(str(prefix).strip())}")
    except (ValueError, TypeError):
        raise ServiceError(
            f"'{data.get('address')}' with prefix '{prefix or ''}' is not a valid {label} "
            f"address and prefix: give e.g. {example}.",
            field=family,
        ) from None
    want = 4 if family == "ipv4" else 6
    if iface.version != want:
        raise ServiceError(
            f"{address} is not an {label} address: give e.g. {example}.", field=family
        )
    low, high = (8, 30) if want == 4 else (8, 126)
    if not low <= iface.network.prefixlen <= high:
        raise ServiceError(
            f"A /{iface.network.prefixlen} {label} subnet is not usable here: use a prefix "
            f"from {low} to {high}.",
            field=family,
        )
    net = iface.network
    gateway = _ip(str(iface.ip), family, net, "address")
    start = end = ""
    if data.get("dhcp_start") or data.get("dhcp_end"):
        if not (data.get("dhcp_start") and data.get("dhcp_end")):
            raise ServiceError(
                "Give both the first and the last address of the DHCP range (or neither).",
                field=family,
            )
        first = _ip(str(data["dhcp_start"]), family, net, "DHCP range start")
        last = _ip(str(data["dhcp_end"]), family, net, "DHCP range end")
        if first > last:  # type: ignore[operator]
            raise ServiceError(
                f"The DHCP range starts at {first}, after its end {last}: swap them.",
                field=family,
            )
        if first <= gateway <= last:  # type: ignore[operator]
            raise ServiceError(
                f"The DHCP range {first}–{last} contains the network's own address {gateway}: "
                "start the range after it.",
                field=family,
            )
        start, end = str(first), str(last)
    static: list[hypervisor.DhcpHost] = []
    if family == "ipv4":
        seen_macs: set[str] = set()
        seen_ips: set[str] = set()
        for entry in hosts:
            mac = normalize_mac(str(entry.get("mac", "")), field="dhcp_hosts")
            ip = _ip(str(entry.get("ip", "")), "dhcp_hosts", net, "static host address")
            name = str(entry.get("name") or "").strip()
            if name and not HOSTNAME_RE.match(name):
                raise ServiceError(
                    f"'{name}' is not a host name: use letters, digits and '-' (e.g. web1).",
                    field="dhcp_hosts",
                )
            if ip == gateway:
                raise ServiceError(
                    f"The static host {mac} cannot have {ip}: it is the network's own address.",
                    field="dhcp_hosts",
                )
            if mac in seen_macs or str(ip) in seen_ips:
                raise ServiceError(
                    f"The static host {mac} → {ip} repeats a MAC or an address of another "
                    "static host: each needs its own.",
                    field="dhcp_hosts",
                )
            seen_macs.add(mac)
            seen_ips.add(str(ip))
            static.append(hypervisor.DhcpHost(mac=mac, ip=str(ip), name=name))
    config = hypervisor.IPConfig(
        family=family,
        address=str(iface.ip),
        prefix=net.prefixlen,
        dhcp_start=start,
        dhcp_end=end,
        hosts=tuple(static),
    )
    return config, net


def _subnets(network: Network) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    found = []
    for data in (network.ipv4, network.ipv6):
        if data.get("address"):
            with contextlib.suppress(ValueError):
                found.append(
                    ipaddress.ip_interface(f"{data['address']}/{data.get('prefix', 24)}").network
                )
    return found


def _interfaces(host: Host) -> dict[str, hypervisor.InterfaceInfo] | None:
    """The host's interfaces by name, or None when they cannot be read (checks are skipped)."""
    try:
        found, _source = hypervisor.host_interfaces(host.uri)
    except hypervisor.HypervisorError:
        return None
    return {i.name: i for i in found}


def _check_devices(
    host: Host,
    mode: str,
    bridge: str,
    dev: str,
    name: str,
    interfaces: dict[str, hypervisor.InterfaceInfo] | None,
) -> None:
    """Refuse bridge and device names that are taken, or missing where they must exist."""
    others = Network.objects.filter(host=host).exclude(name=name)
    if bridge:
        if not IFNAME_RE.match(bridge):
            raise ServiceError(
                f"'{bridge}' is not a usable bridge name: 1 to 15 letters, digits, '-', '_' "
                "or '.' (e.g. virbr10).",
                field="bridge",
            )
        owner = others.filter(bridge=bridge).first()
        if mode == NetworkMode.BRIDGE:
            if owner is not None:
                raise ServiceError(
                    f"The bridge {bridge} belongs to network '{owner.name}': attach VMs to that "
                    "network instead.",
                    field="bridge",
                )
            if interfaces is not None and bridge not in interfaces:
                raise ServiceError(
                    f"{host.name} has no interface named {bridge}: create the bridge on the "
                    "host first (see Host interfaces), or pick an existing one.",
                    field="bridge",
                )
        else:
            if owner is not None:
                raise ServiceError(
                    f"The bridge name {bridge} is already in use by network '{owner.name}' on "
                    f"{host.name}: choose another name, or leave it empty for libvirt to pick one.",
                    field="bridge",
                )
            if interfaces is not None and bridge in interfaces:
                raise ServiceError(
                    f"An interface named {bridge} already exists on {host.name}: choose another "
                    "bridge name, or leave it empty for libvirt to pick one.",
                    field="bridge",
                )
    elif mode == NetworkMode.BRIDGE:
        raise ServiceError(
            "A bridged network needs the name of an existing host bridge (e.g. br0).",
            field="bridge",
        )
    if dev:
        if not IFNAME_RE.match(dev):
            raise ServiceError(
                f"'{dev}' is not an interface name: 1 to 15 letters, digits, '-', '_' or '.'.",
                field="dev",
            )
        if interfaces is not None and dev not in interfaces:
            raise ServiceError(
                f"{host.name} has no interface named {dev}: pick one from Host interfaces.",
                field="dev",
            )
    elif mode in DEVICE_MODES:
        what = (
            "physical NIC (e.g. eth0)"
            if mode == NetworkMode.MACVTAP
            else "SR-IOV physical function"
        )
        raise ServiceError(f"A {mode} network needs the host's {what}.", field="dev")


def _check_host_addresses(
    host: Host, subnets: list, interfaces: dict[str, hypervisor.InterfaceInfo] | None
) -> None:  # type: ignore[type-arg]
    """Refuse a subnet the host already has on one of its own interfaces (e.g. its LAN)."""
    bridges = set(Network.objects.filter(host=host).values_list("bridge", flat=True))
    for iface in (interfaces or {}).values():
        if iface.name in bridges:
            continue  # a network's own bridge: compared with that network already
        for address in iface.addresses:
            try:
                theirs = ipaddress.ip_interface(address).network
            except ValueError:
                continue
            if theirs.is_link_local:
                continue
            for mine in subnets:
                if mine.version == theirs.version and mine.overlaps(theirs):
                    raise ServiceError(
                        f"The subnet {mine} overlaps {theirs} on {host.name}'s interface "
                        f"{iface.name}: pick a subnet the host does not use.",
                        field=f"ipv{mine.version}",
                    )


def _dns_hosts(entries: list[dict[str, Any]]) -> tuple[hypervisor.DnsHost, ...]:
    result = []
    for entry in entries:
        raw_ip = str(entry.get("ip") or "").strip()
        try:
            ip = ipaddress.ip_address(raw_ip)
        except ValueError:
            raise ServiceError(
                f"The DNS entry address '{raw_ip}' is not an IP address.", field="dns_hosts"
            ) from None
        names = entry.get("hostnames") or []
        if isinstance(names, str):
            names = names.replace(",", " ").split()
        names = [str(n).strip() for n in names if str(n).strip()]
        if not names:
            raise ServiceError(f"Give at least one host name for {ip}.", field="dns_hosts")
        for n in names:
            if not HOSTNAME_RE.match(n):
                raise ServiceError(
                    f"'{n}' is not a host name: use letters, digits, '-' and dots.",
                    field="dns_hosts",
                )
        result.append(hypervisor.DnsHost(ip=str(ip), hostnames=tuple(names)))
    return tuple(result)


# --- networks -------------------------------------------------------------------------------


def create_network(
    host: Host,
    *,
    name: str,
    mode: str,
    actor: Any,
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
    source_ip: str | None = None,
) -> Network:
    """Define a network of any mode on host (admins), start it and set autostart."""
    require_admin(actor, "create networks", "networks are infrastructure")
    name, bridge, dev, domain = (
        (name or "").strip(),
        (bridge or "").strip(),
        (dev or "").strip(),
        (domain or "").strip(),
    )
    with audit.refusals_recorded(
        actor, "network.create", f"{name} on {host.name}", source_ip=source_ip
    ):
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
            raise UnavailableError(
                f"{host.name} is down: networks can only be created on an up host."
            )
        refresh_networks(host)
        if Network.objects.filter(host=host, name=name).exists():
            raise ServiceError(
                f"{host.name} already has a network named '{name}': choose another name.",
                field="name",
            )
        hosts = list(dhcp_hosts or [])
        ips: list[hypervisor.IPConfig] = []
        subnets = []
        for family, data in (("ipv4", ipv4), ("ipv6", ipv6)):
            config, net = _ip_config(family, data, hosts)
            if config is not None:
                ips.append(config)
                subnets.append(net)
        if hosts and not any(ip.family == "ipv4" for ip in ips):
            raise ServiceError(
                "Static DHCP hosts need an IPv4 address for the network.", field="dhcp_hosts"
            )
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
        for other in Network.objects.filter(host=host):
            for mine in subnets:
                for theirs in _subnets(other):
                    if mine.version == theirs.version and mine.overlaps(theirs):
                        raise ServiceError(
                            f"The subnet {mine} overlaps {theirs} of network '{other.name}' on "
                            f"{host.name}: pick a subnet no other network uses.",
                            field=f"ipv{mine.version}",
                        )
        interfaces = _interfaces(host)
        _check_host_addresses(host, subnets, interfaces)
        if mode in DEVICE_MODES:
            bridge = ""  # macvtap and hostdev networks have no bridge
        if mode not in (NetworkMode.NAT, NetworkMode.ROUTED, *DEVICE_MODES):
            dev = ""  # only NAT/routed uplinks and macvtap/SR-IOV devices name one
        _check_devices(host, mode, bridge, dev, name, interfaces)
        if domain and not HOSTNAME_RE.match(domain):
            raise ServiceError(
                f"'{domain}' is not a domain name: use e.g. lab.example.", field="domain"
            )
        if mtu not in (None, ""):
            try:
                mtu = int(mtu)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                mtu = -1
            if not 68 <= mtu <= 65535:
                raise ServiceError("The MTU is a number of bytes from 68 to 65535.", field="mtu")
        else:
            mtu = None
        spec = hypervisor.NetworkSpec(
            name=name,
            mode=mode,
            bridge=bridge,
            dev=dev,
            macvtap_mode=macvtap_mode,
            ips=tuple(ips),
            dns_hosts=_dns_hosts(list(dns_hosts or [])),
            domain=domain,
            mtu=mtu,
        )
        try:
            info = hypervisor.define_network(host.uri, spec, start=start, autostart=autostart)
        except hypervisor.HostUnavailable as exc:
            raise UnavailableError(f"{host.name} cannot be reached: {exc}") from exc
        except hypervisor.HypervisorError as exc:
            raise ServiceError(f"libvirt refused the network: {exc}. Nothing was created.") from exc
        with transaction.atomic():
            network = sync_network(host, info)
            audit.record(
                actor,
                "network.create",
                network,
                detail=f"{mode}, bridge {info.bridge or '-'}, "
                + ", ".join(f"{ip.address}/{ip.prefix}" for ip in ips),
                source_ip=source_ip,
            )
    return network


def _on_network(network: Network, failed: str) -> contextlib.AbstractContextManager[None]:
    """Calls about network: one its host no longer has leaves the list (409)."""
    return on_host(
        network.host,
        failed,
        gone=f"Network '{network.name}' is no longer on {network.host.name}; it was removed "
        "from the list.",
        forget=network.delete,
    )


NETWORK_ACTIONS = ("start", "stop")


def network_action(
    network: Network, action: str, *, actor: Any, source_ip: str | None = None
) -> Network:
    """Start or stop a network (admins)."""
    require_admin(actor, f"{action} networks", "networks are infrastructure")
    if action not in NETWORK_ACTIONS:
        raise ServiceError(f"Unknown action '{action}': use start or stop.")
    with audit.refusals_recorded(actor, f"network.{action}", network, source_ip=source_ip):
        with _on_network(network, f"Could not {action} '{network.name}'"):
            call = hypervisor.start_network if action == "start" else hypervisor.stop_network
            info = call(network.host.uri, network.name)
        with transaction.atomic():
            network = sync_network(network.host, info)
            audit.record(actor, f"network.{action}", network, source_ip=source_ip)
    return network


def set_network_autostart(
    network: Network, enabled: bool, *, actor: Any, source_ip: str | None = None
) -> Network:
    """Start (or not) the network when libvirtd starts (admins)."""
    require_admin(actor, "change networks", "networks are infrastructure")
    with audit.refusals_recorded(actor, "network.autostart", network, source_ip=source_ip):
        with _on_network(network, f"Could not change autostart of '{network.name}'"):
            info = hypervisor.set_network_autostart(network.host.uri, network.name, enabled)
        with transaction.atomic():
            network = sync_network(network.host, info)
            audit.record(
                actor,
                "network.autostart",
                network,
                detail="on" if enabled else "off",
                source_ip=source_ip,
            )
    return network


def delete_network(network: Network, *, actor: Any, source_ip: str | None = None) -> None:
    """Stop and undefine a network no VM uses (admins)."""
    require_admin(actor, "delete networks", "networks are infrastructure")
    with audit.refusals_recorded(actor, "network.delete", network, source_ip=source_ip):
        users = sorted({vm.name for vm, _nic in vms_on_network(network)})
        if users:
            raise ConflictError(
                f"'{network.name}' is used by {', '.join(users)}: detach their NICs from it "
                "first, or they could not start again."
            )
        # A network already gone from its host is deleted here too.
        with on_host(network.host, f"Could not delete '{network.name}'"):
            with contextlib.suppress(hypervisor.NotFound):
                hypervisor.delete_network(network.host.uri, network.name)
        with transaction.atomic():
            audit.record(actor, "network.delete", network, source_ip=source_ip)
            network.delete()


def refresh_leases(network: Network) -> list[dict[str, Any]]:
    """Read the network's DHCP leases from its host into the row; return them."""
    with _on_network(network, f"Could not read the leases of '{network.name}'"):
        leases = hypervisor.network_leases(network.host.uri, network.name)
    network.leases = [dataclasses.asdict(lease) for lease in leases]
    network.leases_read = timezone.now()
    if not rows.save_if_present(network, ["leases", "leases_read"]):
        raise GoneError(f"Network {network.name} was deleted meanwhile.")
    return network.leases


def leases_for_user(network: Network, user: Any) -> list[dict[str, Any]]:
    """The network's leases, each with the VM (that user can see) holding the MAC."""
    macs = {nic.get("mac", "").lower(): vm for vm, nic in vms_on_network(network, user)}
    rows = []
    for lease in network.leases:
        vm = macs.get(str(lease.get("mac", "")).lower())
        rows.append({**lease, "vm": str(vm.pk) if vm else None, "vm_name": vm.name if vm else ""})
    return rows


def vms_on_network(network: Network, user: Any = None) -> list[tuple[VirtualMachine, dict]]:
    """(VM, NIC) pairs of the network's host whose NIC joins it; only VMs user sees if given."""
    qs = VirtualMachine.objects.filter(host=network.host).exclude(state="missing")
    if user is not None:
        qs = restrict(qs, user, VIEW)
    found = []
    for vm in qs.only("id", "name", "state", "nics", "project_id", "host_id"):
        for nic in vm.nics:
            if (nic.get("type") == "network" and nic.get("source") == network.name) or (
                network.bridge
                and nic.get("type") == "bridge"
                and nic.get("source") == network.bridge
            ):
                found.append((vm, nic))
    return found


def host_interfaces(host: Host, *, actor: Any) -> tuple[list[hypervisor.InterfaceInfo], str]:
    """The host's interfaces (admins), read now, and where they came from."""
    require_admin(actor, "see host interfaces", "networks are infrastructure")
    with on_host(host, f"Could not list the interfaces of {host.name}"):
        found, source = hypervisor.host_interfaces(host.uri)
    return list(found), source


# --- the traffic filter ---------------------------------------------------------------------


# Networks whose guests meet on a bridge of the host, where libvirt's nwfilter driver
# can police each NIC's tap device (macvtap and SR-IOV NICs have none).
FILTERED_MODES = {*IP_MODES, NetworkMode.BRIDGE}


def traffic_filter(
    network: Network, actor: Any, owner: Any = None, mac: str = ""
) -> dict[str, Any]:
    """How a NIC that actor plugs into network, on a VM of owner, is kept from spoofing: the
    hypervisor.NicSpec fields. Unless both are admins (an admin may run a router that
    must send for other addresses), libvirt's clean-traffic: the NIC sends only from its
    own MAC and its one IP (a static DHCP host of the network when the MAC has one, else
    the address its DHCP lease gives, or its first packet's where the network has no DHCP)."""
    owner = actor if owner is None else owner
    if (is_admin(actor) and is_admin(owner)) or network.mode not in FILTERED_MODES:
        return {}
    mac = (mac or "").lower()
    static = next(
        (
            str(h.get("ip"))
            for h in network.dhcp_hosts
            if mac and str(h.get("mac", "")).lower() == mac
        ),
        "",
    )
    if static:
        return {"clean_traffic": True, "filter_ip": static}
    dhcp = bool((network.ipv4 or {}).get("dhcp_start"))
    return {"clean_traffic": True, "ip_learning": "dhcp" if dhcp else "any"}
