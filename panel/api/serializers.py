from __future__ import annotations

from typing import Any

from rest_framework import serializers

from panel import jobs
from panel.models import AuditEvent, Host, Job


class HostSerializer(serializers.ModelSerializer):
    capabilities = serializers.SerializerMethodField()

    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "uri",
            "state",
            "domain_type",
            "capabilities",
            "checks",
            "last_error",
            "last_seen",
            "checked_at",
        ]
        read_only_fields = [
            "state",
            "domain_type",
            "checks",
            "last_error",
            "last_seen",
            "checked_at",
        ]

    def get_capabilities(self, host: Host) -> dict[str, Any]:
        return host.facts


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id"]

    def to_representation(self, instance: Job) -> dict[str, Any]:
        return jobs.serialize(instance)


class AuditEventSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="username")

    class Meta:
        model = AuditEvent
        fields = ["id", "time", "user", "action", "target", "result", "detail", "source_ip"]
