"""A VM's NICs: plug one into a network or host bridge, unplug it, set its link, list them.

Members attach NICs only to networks their VM's project may use
(Project.allowed_networks; an empty list allows all) and only on VMs they may
change. Every input is checked before anything reaches libvirt, so a refusal
leaves the host as it was.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied

from networking.models import Network
from networking.services import IFNAME_RE, normalize_mac, traffic_filter, vms_on_network
from panel import hypervisor, locks
from panel.actors import Actor
from panel.exceptions import ConflictError, ServiceError
from panel.permissions import CONFIG_NETWORK, USE_NETWORK, allowed, is_admin, restrict
from vms.models import VirtualMachine
from vms.services.common import VMChange, vm_change

if TYPE_CHECKING:
    from panel.permissions import Person


NIC_MODELS = ("virtio", "e1000e", "rtl8139")
MAX_RATE_KIB = 10_000_000  # 10 GB/s: above any NIC here, below libvirt's limits


def usable_networks(vm: VirtualMachine, user: Person):
    """Networks on the VM's host that user may attach it to."""
    qs = Network.objects.filter(host=vm.host).order_by("-active", "name")
    if is_admin(user):
        return qs
    qs = restrict(qs, user, USE_NETWORK)
    if vm.project is not None and vm.project.allowed_networks.exists():
        qs = qs.filter(pk__in=vm.project.allowed_networks.values("pk"))
    return qs


def _mac_in_use(network: Network, vm: VirtualMachine, mac: str) -> bool:
    """Whether another VM on network's host already has a NIC with mac on that network."""
    return any(
        other.pk != vm.pk and str(nic.get("mac", "")).lower() == mac
        for other, nic in vms_on_network(network)
    )


def _live_persistent(
    vm: VirtualMachine, live: bool | None, persistent: bool | None
) -> tuple[bool, bool]:
    running = vm.state in ("running", "paused")
    live = running if live is None else bool(live)
    persistent = vm.persistent if persistent is None else bool(persistent)
    if not live and not persistent:
        raise ServiceError("Choose live, persistent or both.", field="live")
    if live and not running:
        raise ConflictError(f"{vm.name} is {vm.state}: a live change needs it running.")
    if persistent and not vm.persistent:
        raise ServiceError(
            f"{vm.name} is transient: it has no definition to change; use live only.",
            field="persistent",
        )
    return live, persistent


def _rate(value: Any, field: str) -> int | None:
    if value in (None, "", 0, "0"):
        return None
    try:
        rate = int(value)
    except (TypeError, ValueError):
        rate = -1
    if not 1 <= rate <= MAX_RATE_KIB:
        raise ServiceError(
            f"A bandwidth limit is a whole number of KiB/s from 1 to {MAX_RATE_KIB} "
            "(empty: no limit).",
            field=field,
        )
    return rate


def attach_nic(
    vm: VirtualMachine,
    *,
    actor: Actor,
    network: Network | None = None,
    bridge: str = "",
    model: str = "virtio",
    mac: str = "",
    link_up: bool = True,
    inbound_kib: Any = None,
    outbound_kib: Any = None,
    live: bool | None = None,
    persistent: bool | None = None,
) -> tuple[VirtualMachine, str]:
    """Plug a NIC into a VM (live and/or persistent); return the VM and the NIC's MAC."""
    with vm_change(
        vm, actor, "vm.nic_attach", "change the NICs of", right=CONFIG_NETWORK
    ) as change:
        if model not in NIC_MODELS:
            raise ServiceError(
                f"Unknown NIC model '{model}': use one of {', '.join(NIC_MODELS)}.", field="model"
            )
        mac = _checked_mac(vm, mac)
        bridge = (bridge or "").strip()
        _check_source(vm, actor, network, bridge)
        inbound, outbound = _rate(inbound_kib, "inbound_kib"), _rate(outbound_kib, "outbound_kib")
        live, persistent = _live_persistent(vm, live, persistent)
        if live and network is not None and not network.active:
            raise ConflictError(
                f"Network '{network.name}' is not active: start it before plugging a NIC in live."
            )
        spec = hypervisor.NicSpec(
            network=network.name if network is not None else None,
            bridge=bridge or None,
            mac=mac or None,
            model=model,
            link_up=link_up,
            inbound_kib=inbound,
            outbound_kib=outbound,
            **(traffic_filter(network, actor, vm.owner, mac) if network is not None else {}),
        )
        with change.claim("attaching a NIC"), _mac_claim(network, mac):
            mac = _plug_in(change, spec, network, live=live, persistent=persistent)
        source = f"network {spec.network}" if spec.network else f"bridge {bridge}"
        vm = change.done(
            None, f"{mac} {model} on {source} ({_where(live, persistent)})", details=True
        )
    return vm, mac


def _checked_mac(vm: VirtualMachine, mac: str) -> str:
    """The chosen MAC, normalized, that the VM has on no NIC yet; empty when none was chosen."""
    mac = normalize_mac(mac) if (mac or "").strip() else ""
    if mac and any(n.get("mac", "").lower() == mac for n in vm.nics):
        raise ServiceError(f"{vm.name} already has a NIC with MAC {mac}.", field="mac")
    return mac


def _check_source(vm: VirtualMachine, actor: Actor, network: Network | None, bridge: str) -> None:
    """Refuse a NIC on no network or two, on a network of another host or not allowed to the
    VM's project, and on a host bridge unless actor is an admin."""
    if (network is None) == (not bridge):
        raise ServiceError("Choose either a network or a host bridge for the NIC.", field="network")
    if network is not None:
        if network.host_id != vm.host_id:
            raise ServiceError(
                f"Network '{network.name}' is on {network.host.name}, but {vm.name} runs on "
                f"{vm.host.name}: pick a network of {vm.host.name}.",
                field="network",
            )
        if not usable_networks(vm, actor.user).filter(pk=network.pk).exists():
            raise PermissionDenied(
                f"Project {vm.project} may not use network '{network.name}': ask an "
                "administrator to allow it."
            )
    elif not is_admin(actor.user):
        raise PermissionDenied(
            "Only administrators can attach a NIC straight to a host bridge; use a network."
        )
    elif not IFNAME_RE.match(bridge):
        raise ServiceError(f"'{bridge}' is not a bridge name.", field="bridge")


def _mac_claim(network: Network | None, mac: str) -> contextlib.AbstractContextManager[Any]:
    """The network's claim on its MACs while a chosen one is checked and plugged in."""
    # One MAC per network: two NICs with the same one would take each other's traffic
    # (and the second would pass the first's anti-spoofing filter). A chosen MAC is
    # checked and plugged in under the network's claim, so two requests cannot both
    # take it; libvirt picks a free one when none is given.
    if network is None or not mac:
        return contextlib.nullcontext()
    return locks.hold(
        f"network:{network.pk}:macs",
        label=f"Network '{network.name}'",
        what=f"attaching a NIC with MAC {mac}",
        jobs_too=False,
    )


def _plug_in(
    change: VMChange,
    spec: hypervisor.NicSpec,
    network: Network | None,
    *,
    live: bool,
    persistent: bool,
) -> str:
    """Plug the NIC in unless another VM has its MAC on the network; return its MAC."""
    vm, mac = change.vm, spec.mac or ""
    if network is not None and mac and _mac_in_use(network, vm, mac):
        raise ServiceError(
            f"MAC {mac} is already used on network '{network.name}' by another VM: "
            "pick another, or leave the MAC empty for a new one.",
            field="mac",
        )
    try:
        with change.on_host(f"Could not attach the NIC to {vm.name}"):
            _info, mac = hypervisor.attach_nic(
                vm.host.uri, str(vm.pk), spec, live=live, persistent=persistent
            )
    except ConflictError as exc:
        if "qdisc" in exc.message and (spec.inbound_kib or spec.outbound_kib):
            raise ConflictError(
                f"{exc.message} — {vm.host.name}'s kernel lacks the traffic-control "
                "modules libvirt uses for bandwidth limits (sch_htb, sch_sfq): attach "
                "the NIC without limits, or load those modules on the host."
            ) from exc
        raise
    return mac


def _where(live: bool, persistent: bool) -> str:
    """Where a change went, for the audit: live, persistent or live+persistent."""
    return "+".join(w for w, on in (("live", live), ("persistent", persistent)) if on)


def detach_nic(
    vm: VirtualMachine,
    mac: str,
    *,
    actor: Actor,
    live: bool | None = None,
    persistent: bool | None = None,
) -> VirtualMachine:
    """Unplug the NIC with this MAC from a VM (live and/or persistent)."""
    with vm_change(
        vm, actor, "vm.nic_detach", "change the NICs of", right=CONFIG_NETWORK
    ) as change:
        mac = normalize_mac(mac)
        known = {n.get("mac", "").lower() for n in vm_nics(vm)}
        if mac not in known:
            raise ServiceError(
                f"{vm.name} has no NIC with MAC {mac}; its NICs are "
                f"{', '.join(sorted(known)) or 'none'}.",
                field="mac",
            )
        live, persistent = _live_persistent(vm, live, persistent)
        with change.claim(f"detaching NIC {mac}"):
            with change.on_host(f"Could not detach NIC {mac} from {vm.name}"):
                hypervisor.detach_nic(
                    vm.host.uri, str(vm.pk), mac, live=live, persistent=persistent
                )
        return change.done(None, f"{mac} ({_where(live, persistent)})", details=True)


def set_nic_link(
    vm: VirtualMachine,
    mac: str,
    up: bool,
    *,
    actor: Actor,
) -> VirtualMachine:
    """Set a NIC's link up or down (live when running, and in the definition)."""
    with vm_change(vm, actor, "vm.nic_link", "change the NICs of", right=CONFIG_NETWORK) as change:
        mac = normalize_mac(mac)
        if mac not in {n.get("mac", "").lower() for n in vm_nics(vm)}:
            raise ServiceError(f"{vm.name} has no NIC with MAC {mac}.", field="mac")
        live, persistent = _live_persistent(vm, None, None)
        with change.claim(f"changing the link of {mac}"):
            with change.on_host(f"Could not change the link of {mac}"):
                hypervisor.set_nic_link(
                    vm.host.uri, str(vm.pk), mac, up, live=live, persistent=persistent
                )
        return change.done(None, f"{mac} link {'up' if up else 'down'}", details=True)


def vm_nics(vm: VirtualMachine) -> list[dict[str, Any]]:
    """The VM's NICs for display: MAC, model, network, vnet device, link, bandwidth, IPs."""
    # vm.nics follows every sync; the live XML read with the details adds the vnet
    # device, link state and bandwidth (matched by MAC, as it may be older).
    extra = {}
    if vm.xml:
        with contextlib.suppress(ValueError):
            extra = {n.mac.lower(): n for n in hypervisor.parse_nics(vm.xml)}
    vnets = vm.details.get("vnet_devices", {})
    nics = []
    for n in vm.nics:
        mac = str(n.get("mac", "")).lower()
        more = extra.get(mac)
        nics.append(
            {
                **n,
                "mac": mac,
                "target": (more.target if more else "") or vnets.get(n.get("mac", ""), ""),
                "link_up": more.link_up if more else True,
                "inbound_kib": more.inbound_kib if more else None,
                "outbound_kib": more.outbound_kib if more else None,
            }
        )
    names = dict(Network.objects.filter(host=vm.host_id).values_list("name", "pk"))
    for nic in nics:
        nic["ips"] = [
            f"{ip['address']}/{ip['prefix']}"
            for ip in vm.ips
            if str(ip.get("mac", "")).lower() == nic["mac"].lower()
        ]
        nic["network_id"] = names.get(nic["source"]) if nic["type"] == "network" else None
    return nics


def can_change_nics(vm: VirtualMachine, user: Person) -> bool:
    """Whether user may attach, detach and relink the VM's NICs."""
    return allowed(user, vm, CONFIG_NETWORK)
