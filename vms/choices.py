"""Enumerations of the VM app."""

from django.db import models


class VMState(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    SHUTOFF = "shutoff", "Shut off"
    CRASHED = "crashed", "Crashed"
    PMSUSPENDED = "pmsuspended", "Suspended (power management)"
    MISSING = "missing", "Missing"


class BackupState(models.TextChoices):
    RUNNING = "running", "Copying"
    VERIFYING = "verifying", "Verifying"
    GOOD = "good", "Good"
    FAILED = "failed", "Failed"


class BackupMethod(models.TextChoices):
    OFFLINE = "offline", "Offline copy (VM shut off)"
    PUSH = "push", "libvirt backup job (VM running)"
    SNAPSHOT = "snapshot", "External snapshot, copy, merge (VM running)"


class BackupKind(models.TextChoices):
    FULL = "full", "Full"
    INCREMENTAL = "incremental", "Incremental"


class ScheduleKind(models.TextChoices):
    SNAPSHOT = "snapshot", "Snapshot"
    BACKUP = "backup", "Backup"
