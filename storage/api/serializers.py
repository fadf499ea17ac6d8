from __future__ import annotations

from rest_framework import serializers

from storage.models import StoragePool, Volume


class PoolSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = StoragePool
        fields = [
            "id",
            "host",
            "host_name",
            "name",
            "uuid",
            "type",
            "state",
            "target_path",
            "capacity",
            "allocation",
            "available",
            "autostart",
            "persistent",
            "shared_storage",
            "synced",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "shared_storage": {
                "help_text": "Declared by an admin: the pool's directory is one storage "
                "every host with a pool at the same path sees (NFS, a cluster file system). "
                "A running VM whose disks all sit in such pools on both hosts migrates live "
                "without copying them."
            }
        }


class PoolCreateSerializer(serializers.Serializer):
    """Input of POST pools/; the fields a type needs are checked by the service."""

    host = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    type = serializers.CharField(max_length=20)
    target_path = serializers.CharField(required=False, allow_blank=True, default="")
    source = serializers.DictField(required=False, default=dict)
    autostart = serializers.BooleanField(required=False, default=False)
    persistent = serializers.BooleanField(required=False, default=True)
    build = serializers.BooleanField(required=False, default=True)
    start = serializers.BooleanField(required=False, default=True)


class VolumeSerializer(serializers.ModelSerializer):
    pool_name = serializers.CharField(source="pool.name", read_only=True)
    host = serializers.IntegerField(source="pool.host_id", read_only=True)
    owner = serializers.CharField(
        source="owner.username", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = Volume
        fields = [
            "id",
            "pool",
            "pool_name",
            "host",
            "project",
            "owner",
            "name",
            "path",
            "format",
            "format_source",
            "capacity",
            "allocation",
            "backing",
            "shared",
            "info",
            "check_result",
            "synced",
        ]
        read_only_fields = fields


class VolumeCreateSerializer(serializers.Serializer):
    pool = serializers.IntegerField()
    name = serializers.CharField(max_length=255)
    format = serializers.CharField(max_length=20, required=False, default="qcow2")
    capacity_gib = serializers.CharField(required=False, allow_blank=True, default="")
    preallocation = serializers.CharField(max_length=20, required=False, default="off")
    backing_volume = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Make a qcow2 overlay on this volume: one you may change, or a shared image.",
    )
    project = serializers.IntegerField(required=False, allow_null=True, default=None)


class AssignSerializer(serializers.Serializer):
    """Input of POST volumes/{id}/assign/: the project and the format the admin declares."""

    project = serializers.IntegerField(required=False, allow_null=True, default=None)
    format = serializers.CharField(
        max_length=20,
        required=False,
        allow_blank=True,
        default="",
        help_text="The image format (raw, qcow2, qed, vmdk, vdi, vpc): declared, never read "
        "from the content.",
    )


class ResizeSerializer(serializers.Serializer):
    capacity_gib = serializers.CharField()
    shrink = serializers.BooleanField(required=False, default=False)


class CopySerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    format = serializers.CharField(max_length=20, required=False, allow_blank=True, default="")
    pool = serializers.IntegerField(required=False, allow_null=True, default=None)


class DiskAttachSerializer(serializers.Serializer):
    volume = serializers.IntegerField(required=False, allow_null=True, default=None)
    device = serializers.CharField(required=False, default="disk")
    bus = serializers.CharField(required=False, default="virtio")
    target = serializers.CharField(required=False, allow_blank=True, default="")
    cache = serializers.CharField(required=False, allow_blank=True, default="")
    io = serializers.CharField(required=False, allow_blank=True, default="")
    discard = serializers.CharField(required=False, allow_blank=True, default="")
    readonly = serializers.BooleanField(required=False, default=False)
    shareable = serializers.BooleanField(required=False, default=False)
    live = serializers.BooleanField(required=False, default=True)
    persistent = serializers.BooleanField(required=False, default=True)


class DiskDetachSerializer(serializers.Serializer):
    target = serializers.CharField()
    live = serializers.BooleanField(required=False, default=True)
    persistent = serializers.BooleanField(required=False, default=True)


class MediaSerializer(serializers.Serializer):
    target = serializers.CharField()
    volume = serializers.IntegerField(required=False, allow_null=True, default=None)
    live = serializers.BooleanField(required=False, default=True)
    persistent = serializers.BooleanField(required=False, default=False)
