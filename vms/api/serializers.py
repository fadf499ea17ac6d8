from __future__ import annotations

from typing import Any

from rest_framework import serializers

from panel.exceptions import ServiceError
from panel.models import Project
from vms.models import VirtualMachine
from vms.services.tags import parse_tags


class TagsField(serializers.ListField):
    """A VM's tags: checked as the page checks them, lowercased, sorted, no duplicates."""

    child = serializers.CharField()

    def to_internal_value(self, data: Any) -> list[str]:
        try:
            return parse_tags(data)
        except ServiceError as exc:
            raise serializers.ValidationError(exc.message) from exc


class VirtualMachineSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    host = serializers.PrimaryKeyRelatedField(read_only=True)
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all(), required=False)
    owner = serializers.CharField(
        source="owner.username", read_only=True, default=None, allow_null=True
    )
    host_name = serializers.CharField(source="host.name", read_only=True)
    tags = TagsField(
        required=False,
        help_text="Labels to find the VM by: each 1 to 32 lowercase letters, digits, '-', '_' "
        "or '.', at most 16. A PATCH replaces them all (an empty list removes them).",
    )

    class Meta:
        model = VirtualMachine
        fields = [
            "id",
            "name",
            "host",
            "host_name",
            "project",
            "owner",
            "state",
            "domain_type",
            "firmware",
            "vcpus",
            "memory_mib",
            "autostart",
            "persistent",
            "disks",
            "nics",
            "ips",
            "graphics",
            "synced",
            "tags",
            "ha",
        ]
        read_only_fields = [
            "name",
            "state",
            "domain_type",
            "firmware",
            "vcpus",
            "memory_mib",
            "persistent",
            "disks",
            "nics",
            "ips",
            "graphics",
            "synced",
            "ha",
        ]


class VirtualMachineDetailSerializer(VirtualMachineSerializer):
    class Meta(VirtualMachineSerializer.Meta):
        fields = [*VirtualMachineSerializer.Meta.fields, "details", "xml"]
        read_only_fields = [*VirtualMachineSerializer.Meta.read_only_fields, "details", "xml"]


class ActionSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=["acpi", "agent"], default="acpi")
    timeout = serializers.IntegerField(min_value=5, max_value=3600, default=120)

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(data or {})
