"""Input of the tuning endpoints; the services check it against the VM and host."""

from __future__ import annotations

from rest_framework import serializers

from panel.hypervisor.specs import IOTUNE_FIELDS


class ScopeSerializer(serializers.Serializer):
    live = serializers.BooleanField(default=True)
    persistent = serializers.BooleanField(default=True)


class VcpuPinSerializer(ScopeSerializer):
    pins = serializers.DictField(
        child=serializers.ListField(child=serializers.IntegerField(min_value=0), allow_empty=True),
        help_text='{"0": [2, 3], "1": [3]}: vCPU -> host CPUs ([] = any CPU).',
    )

    def validate_pins(self, value: dict) -> dict[int, list[int]]:
        try:
            return {int(k): v for k, v in value.items()}
        except ValueError:
            raise serializers.ValidationError('Keys are vCPU numbers, like {"0": [1]}.') from None


class EmulatorPinSerializer(ScopeSerializer):
    cpus = serializers.ListField(child=serializers.IntegerField(min_value=0), allow_empty=True)


class MemorySerializer(ScopeSerializer):
    memory_mib = serializers.IntegerField(min_value=1)
    force = serializers.BooleanField(
        default=False, help_text="Admins: apply even beyond the host's reserve advice."
    )


class VcpusSerializer(ScopeSerializer):
    vcpus = serializers.IntegerField(min_value=1)


class IoTuneSerializer(ScopeSerializer):
    target = serializers.CharField(max_length=10)


for _field in IOTUNE_FIELDS:
    IoTuneSerializer._declared_fields[_field] = serializers.IntegerField(min_value=0, default=0)


class MaxVcpusSerializer(serializers.Serializer):
    max_vcpus = serializers.IntegerField(min_value=1)


class MaxMemorySerializer(serializers.Serializer):
    max_memory_mib = serializers.IntegerField(min_value=1)
    force = serializers.BooleanField(default=False)


class NumaTuneSerializer(ScopeSerializer):
    live = serializers.BooleanField(default=False)
    mode = serializers.CharField(max_length=20)
    nodeset = serializers.CharField(max_length=200)


class HugepagesSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    force = serializers.BooleanField(default=False)


class NicBandwidthSerializer(ScopeSerializer):
    mac = serializers.CharField(max_length=17)
    inbound_kib = serializers.IntegerField(min_value=0, default=0)
    outbound_kib = serializers.IntegerField(min_value=0, default=0)
