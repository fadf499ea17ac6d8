from __future__ import annotations

from rest_framework import serializers

from networking.choices import NetworkMode
from networking.models import Network


class NetworkSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)
    domain = serializers.CharField(source="domain_name", read_only=True)
    macvtap_mode = serializers.SerializerMethodField()

    class Meta:
        model = Network
        fields = [
            "id",
            "host",
            "host_name",
            "name",
            "uuid",
            "mode",
            "forward_mode",
            "macvtap_mode",
            "bridge",
            "dev",
            "ipv4",
            "ipv6",
            "dhcp_hosts",
            "dns_hosts",
            "domain",
            "mtu",
            "active",
            "autostart",
            "persistent",
            "synced",
        ]
        read_only_fields = fields

    def get_macvtap_mode(self, obj: Network) -> str | None:
        return obj.forward_mode if obj.mode == NetworkMode.MACVTAP else None


class IPSerializer(serializers.Serializer):
    address = serializers.CharField(required=False, allow_blank=True, default="")
    prefix = serializers.IntegerField(required=False, allow_null=True, default=None)
    dhcp_start = serializers.CharField(required=False, allow_blank=True, default="")
    dhcp_end = serializers.CharField(required=False, allow_blank=True, default="")


class DhcpHostSerializer(serializers.Serializer):
    mac = serializers.CharField()
    ip = serializers.CharField()
    name = serializers.CharField(required=False, allow_blank=True, default="")


class DnsHostSerializer(serializers.Serializer):
    ip = serializers.CharField()
    hostnames = serializers.ListField(child=serializers.CharField(), min_length=1)


class NetworkCreateSerializer(serializers.Serializer):
    """What POST networks/ takes; the service checks the values and says what is wrong."""

    host = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    mode = serializers.ChoiceField(choices=NetworkMode.choices)
    bridge = serializers.CharField(required=False, allow_blank=True, default="")
    dev = serializers.CharField(required=False, allow_blank=True, default="")
    macvtap_mode = serializers.CharField(required=False, default="bridge")
    ipv4 = IPSerializer(required=False, allow_null=True, default=None)
    ipv6 = IPSerializer(required=False, allow_null=True, default=None)
    dhcp_hosts = DhcpHostSerializer(many=True, required=False, default=list)
    dns_hosts = DnsHostSerializer(many=True, required=False, default=list)
    domain = serializers.CharField(required=False, allow_blank=True, default="")
    mtu = serializers.IntegerField(required=False, allow_null=True, default=None)
    autostart = serializers.BooleanField(required=False, default=False)
    start = serializers.BooleanField(required=False, default=True)


class AutostartSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class LeaseSerializer(serializers.Serializer):
    mac = serializers.CharField()
    ip = serializers.CharField()
    prefix = serializers.IntegerField()
    family = serializers.CharField()
    hostname = serializers.CharField()
    client_id = serializers.CharField()
    expiry = serializers.IntegerField(help_text="Unix time the lease ends.")
    iface = serializers.CharField()
    vm = serializers.CharField(allow_null=True)
    vm_name = serializers.CharField()
