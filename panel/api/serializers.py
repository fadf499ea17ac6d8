from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from panel import jobs, quotas
from panel.choices import ProjectRole
from panel.exceptions import ServiceError
from panel.models import AuditEvent, Host, HostCertificates, Job, Membership, Project
from panel.permissions import can_manage_hosts
from panel.services import host_keys
from panel.services.host_migration import clean_migration_address
from panel.services.hosts import host_error_for, host_facts_for

User = get_user_model()


class HostCertificatesSerializer(serializers.ModelSerializer):
    """The certificates a qemu+tls host was verified with, and since when (never the key)."""

    class Meta:
        model = HostCertificates
        fields = [
            "ca_subject",
            "client_subject",
            "client_not_after",
            "server_subject",
            "server_not_after",
            "server_sha256",
            "since",
        ]
        read_only_fields = fields


class CertificateUploadSerializer(serializers.Serializer):
    """New certificates for a qemu+tls host, PEM text each."""

    ca_certificate = serializers.CharField(trim_whitespace=False)
    client_certificate = serializers.CharField(trim_whitespace=False)
    client_key = serializers.CharField(
        trim_whitespace=False, help_text="PEM, without a passphrase; never returned."
    )


class HostReachSerializer(serializers.Serializer):
    transport = serializers.CharField(help_text="ssh, tls, tcp, unix or local")
    user = serializers.CharField()
    address = serializers.CharField()
    port = serializers.IntegerField(allow_null=True)
    ssh_host_key_fingerprint = serializers.CharField(help_text="The pinned key, SHA256:...")
    ssh_host_key_offered_fingerprint = serializers.CharField(
        help_text="A different key the host offers now: the host is blocked until accepted."
    )
    since = serializers.DateTimeField()


class HostKeySerializer(serializers.Serializer):
    uri = serializers.CharField(max_length=500, write_only=True)
    key_type = serializers.CharField(read_only=True)
    fingerprint = serializers.CharField(read_only=True)


class AcceptHostKeySerializer(serializers.Serializer):
    fingerprint = serializers.CharField(
        max_length=100, help_text="The fingerprint of the new key, as checked on the host."
    )


class MigrationAddressSerializer(serializers.Serializer):
    migration_address = serializers.CharField(
        max_length=253,
        allow_blank=True,
        help_text="An IP address or host name without scheme or port; empty to use the "
        "host part of the host's URI.",
    )


class PanelSSHKeySerializer(serializers.Serializer):
    authorized_keys = serializers.CharField(
        help_text="The panel's public key, a line for ~/.ssh/authorized_keys on the host."
    )


class HostSerializer(serializers.ModelSerializer):
    """A host. Its URI, the last connection error in full and the facts that say where
    it is (hostname, URI, UUID) are for admins: everyone else gets null, a plain
    "cannot reach" and the facts without them."""

    uri = serializers.CharField(
        max_length=500,
        allow_null=True,
        help_text="The libvirt URI (qemu:///system, qemu+ssh://user@host/system, "
        "qemu+tls://host/system): admins only, null for everyone else. Allowed query "
        "parameters: no_tty, mode, proxy, sshauth; others (command, netcat, socket, keyfile, "
        "...) are refused.",
    )
    capabilities = serializers.SerializerMethodField()
    ca_certificate = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        help_text="qemu+tls hosts (required there): the CA certificate, PEM, that signed "
        "the host's server certificate and the client certificate.",
    )
    client_certificate = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        help_text="qemu+tls hosts: the panel's client certificate, PEM.",
    )
    client_key = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        help_text="qemu+tls hosts: the client certificate's private key, PEM, without a "
        "passphrase. Kept outside the database, readable by the panel only; never returned.",
    )
    certificates = serializers.SerializerMethodField(
        help_text="How the panel reaches a qemu+tls host (admins only; null otherwise)."
    )
    ssh_host_key_fingerprint = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="On adding a qemu+ssh host: the SHA256 fingerprint of its host key that an "
        "admin checked (POST /api/v1/hosts/scan-key/ reads it). Without it, or when the host "
        "offers another key, the host is refused, the message naming the key it offers.",
    )
    migration_address = serializers.CharField(
        max_length=253,
        required=False,
        allow_blank=True,
        help_text="The IP address or host name other hosts reach this one at when a VM "
        "migrates here (tcp://<it>); its QEMU listens on that address only. Empty: the "
        "host part of its URI. Change it with POST hosts/{id}/migration-address/.",
    )
    reach = serializers.SerializerMethodField(
        help_text="Admins only (null for everyone else): how the panel reaches the host "
        "(transport, user, address, port), the SSH host key pinned for it and a different "
        "one it offers now (blocking it until accepted), and since when."
    )

    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "uri",
            "ssh_host_key_fingerprint",
            "migration_address",
            "reach",
            "state",
            "domain_type",
            "capabilities",
            "checks",
            "last_error",
            "last_seen",
            "checked_at",
            "ca_certificate",
            "client_certificate",
            "client_key",
            "certificates",
            "maintenance",
            "maintenance_since",
            "fencing",
            "ha_reached_at",
            "ha_note",
            "fenced_at",
        ]
        read_only_fields = [
            "state",
            "domain_type",
            "checks",
            "last_error",
            "last_seen",
            "checked_at",
            "maintenance",
            "maintenance_since",
            "fencing",
            "ha_reached_at",
            "ha_note",
            "fenced_at",
        ]

    def validate_migration_address(self, value: str) -> str:
        try:
            return clean_migration_address(value)
        except ServiceError as exc:
            raise serializers.ValidationError(exc.message) from exc

    @extend_schema_field(HostReachSerializer(allow_null=True))
    def get_reach(self, host: Host) -> dict[str, Any] | None:
        return host_keys.reach(host) if can_manage_hosts(self._user()) else None

    def get_capabilities(self, host: Host) -> dict[str, Any]:
        return host_facts_for(self._user(), host.facts)

    @extend_schema_field(HostCertificatesSerializer(allow_null=True))
    def get_certificates(self, host: Host) -> dict[str, Any] | None:
        if not can_manage_hosts(self._user()):
            return None
        row = HostCertificates.objects.filter(host=host).first()
        if row is None:
            return None
        return dict(HostCertificatesSerializer(row).data)

    def _user(self) -> Any:
        request = self.context.get("request")
        return getattr(request, "user", None)

    def to_representation(self, instance: Host) -> dict[str, Any]:
        data = super().to_representation(instance)
        user = self._user()
        if not can_manage_hosts(user):
            data["uri"] = None
        data["last_error"] = host_error_for(user, instance.last_error)
        return data


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id"]

    def to_representation(self, instance: Job) -> dict[str, Any]:
        return jobs.serialize(instance)


class AuditEventSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="username")
    project = serializers.CharField(source="project.name", default=None, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "time",
            "user",
            "project",
            "action",
            "target",
            "result",
            "detail",
            "source_ip",
            "via",
        ]


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    is_admin = serializers.BooleanField(required=False, default=False, source="is_superuser")
    is_active = serializers.BooleanField(read_only=True)


class QuotaSerializer(serializers.Serializer):
    vms = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    vcpus = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    memory_mib = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    disk_gib = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    backup_gib = serializers.IntegerField(
        min_value=0,
        allow_null=True,
        required=False,
        help_text="Backups and snapshots, GiB (null: no limit). A backup or snapshot being "
        "taken counts the capacity of its disks (and a snapshot's memory); once done, what "
        "it holds in the pool.",
    )


class ProjectSerializer(serializers.ModelSerializer):
    quota = QuotaSerializer(required=False)
    usage = serializers.SerializerMethodField()
    allowed_hosts = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=Host.objects.all()
    )

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "quota",
            "usage",
            "allowed_hosts",
            "require_second_factor",
            "created",
        ]
        read_only_fields = ["created"]
        extra_kwargs = {
            "require_second_factor": {
                "help_text": "Members must set up a second factor before they can use the "
                "panel or the API (admins set it)."
            }
        }

    def get_usage(self, project: Project) -> dict[str, int]:
        return quotas.usage(project).as_dict()

    def to_representation(self, instance: Project) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["quota"] = quotas.limits(instance)
        return data


class MembershipSerializer(serializers.ModelSerializer):
    user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all())
    username = serializers.CharField(source="user.username", read_only=True)
    role = serializers.ChoiceField(choices=ProjectRole.choices)

    class Meta:
        model = Membership
        fields = ["user", "username", "role", "created"]
        read_only_fields = ["created"]
