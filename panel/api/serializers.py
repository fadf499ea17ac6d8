from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from panel import jobs, quotas
from panel.choices import ProjectRole
from panel.models import AuditEvent, Host, Job, Membership, Project

User = get_user_model()


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


class ProjectSerializer(serializers.ModelSerializer):
    quota = QuotaSerializer(required=False)
    usage = serializers.SerializerMethodField()
    allowed_hosts = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=Host.objects.all()
    )

    class Meta:
        model = Project
        fields = ["id", "name", "description", "quota", "usage", "allowed_hosts", "created"]
        read_only_fields = ["created"]

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
