"""The create-network form; its values are checked again (and fully) by the services."""

from __future__ import annotations

from typing import Any

from django import forms

from panel.exceptions import ServiceError
from panel.models import Host

from .choices import MACVTAP_HELP, NetworkMode

# Service error fields that the form shows under another name.
FIELD_OF = {"ipv4": "ipv4_address", "ipv6": "ipv6_address"}


def add_error(form: forms.Form, exc: ServiceError) -> None:
    """Show a service's refusal on the form field it concerns, else above the form."""
    field = FIELD_OF.get(exc.field or "", exc.field)
    form.add_error(field if field in form.fields else None, exc.message)


class NetworkForm(forms.Form):
    """Create a virtual network of any mode on one host."""

    host = forms.ModelChoiceField(queryset=Host.objects.none(), empty_label=None)
    name = forms.CharField(max_length=50, help_text="Letters, digits, '-', '_' or '.'.")
    mode = forms.ChoiceField(choices=NetworkMode.choices, initial=NetworkMode.ISOLATED)
    bridge = forms.CharField(
        max_length=15,
        required=False,
        help_text="NAT, routed, isolated, open: the bridge libvirt creates (empty: libvirt "
        "picks virbrN). Bridged: the existing host bridge, e.g. br0.",
    )
    dev = forms.CharField(
        max_length=15,
        required=False,
        label="Host device",
        help_text="Macvtap: the physical NIC (e.g. eth0). SR-IOV: the physical function. "
        "NAT/routed: optional uplink to restrict forwarding to.",
    )
    macvtap_mode = forms.ChoiceField(
        choices=[(k, f"{k}: {v}") for k, v in MACVTAP_HELP.items()],
        initial="bridge",
        label="Macvtap mode",
        required=False,
    )
    ipv4_address = forms.CharField(
        required=False,
        label="IPv4 address",
        help_text="The host's address on the network, with prefix: e.g. 10.213.5.1/24.",
    )
    ipv4_dhcp_start = forms.CharField(required=False, label="IPv4 DHCP range start")
    ipv4_dhcp_end = forms.CharField(required=False, label="IPv4 DHCP range end")
    ipv6_address = forms.CharField(
        required=False, label="IPv6 address", help_text="E.g. fd00:213:5::1/64."
    )
    ipv6_dhcp_start = forms.CharField(required=False, label="IPv6 DHCP range start")
    ipv6_dhcp_end = forms.CharField(required=False, label="IPv6 DHCP range end")
    dhcp_hosts = forms.CharField(
        required=False,
        widget=forms.Textarea,
        label="Static DHCP hosts",
        help_text="One per line: MAC IPv4-address [name], e.g. 52:54:00:12:34:56 10.213.5.20 web1",
    )
    dns_hosts = forms.CharField(
        required=False,
        widget=forms.Textarea,
        label="DNS host entries",
        help_text="One per line: address name [more names], e.g. 10.213.5.20 web1 www",
    )
    domain = forms.CharField(required=False, label="Domain name", help_text="E.g. lab.example.")
    mtu = forms.IntegerField(required=False, label="MTU", min_value=68, max_value=65535)
    start = forms.BooleanField(required=False, initial=True, label="Start it now")
    autostart = forms.BooleanField(required=False, label="Start with libvirtd (autostart)")

    def __init__(self, *args: Any, hosts: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if hosts is not None:
            self.fields["host"].queryset = hosts  # type: ignore[attr-defined]

    @staticmethod
    def _lines(text: str) -> list[list[str]]:
        return [line.split() for line in (text or "").splitlines() if line.strip()]

    def clean_dhcp_hosts(self) -> list[dict[str, str]]:
        hosts = []
        for parts in self._lines(self.cleaned_data["dhcp_hosts"]):
            if len(parts) not in (2, 3):
                raise forms.ValidationError(
                    f"'{' '.join(parts)}': write MAC, IPv4 address and optionally a name, "
                    "separated by spaces."
                )
            hosts.append(
                {"mac": parts[0], "ip": parts[1], "name": parts[2] if len(parts) > 2 else ""}
            )
        return hosts

    def clean_dns_hosts(self) -> list[dict[str, Any]]:
        entries = []
        for parts in self._lines(self.cleaned_data["dns_hosts"]):
            if len(parts) < 2:
                raise forms.ValidationError(
                    f"'{' '.join(parts)}': write an address and at least one host name."
                )
            entries.append({"ip": parts[0], "hostnames": parts[1:]})
        return entries

    def service_kwargs(self) -> dict[str, Any]:
        d = self.cleaned_data
        return {
            "name": d["name"],
            "mode": d["mode"],
            "bridge": d["bridge"],
            "dev": d["dev"],
            "macvtap_mode": d["macvtap_mode"] or "bridge",
            "ipv4": {
                "address": d["ipv4_address"],
                "dhcp_start": d["ipv4_dhcp_start"],
                "dhcp_end": d["ipv4_dhcp_end"],
            },
            "ipv6": {
                "address": d["ipv6_address"],
                "dhcp_start": d["ipv6_dhcp_start"],
                "dhcp_end": d["ipv6_dhcp_end"],
            },
            "dhcp_hosts": d["dhcp_hosts"],
            "dns_hosts": d["dns_hosts"],
            "domain": d["domain"],
            "mtu": d["mtu"],
            "start": d["start"],
            "autostart": d["autostart"],
        }
