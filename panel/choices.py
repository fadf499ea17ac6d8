"""Enumerations shared by the panel's models, API and templates."""

from django.db import models


class HostState(models.TextChoices):
    UP = "up", "Up"
    DOWN = "down", "Down"
    UNKNOWN = "unknown", "Unknown"


class HostFencing(models.TextChoices):
    """How the panel knows a lost host no longer runs its HA VMs (vms.services.ha)."""

    NONE = "", "None: its HA VMs are never restarted elsewhere"
    AGENT = "agent", "Agent: the host's HA agent stops them when the panel's lease runs out"
    MANUAL = "manual", "Manual: an administrator confirms the host is off"


class CheckStatus(models.TextChoices):
    PASS = "pass", "Pass"
    WARN = "warn", "Warn"
    FAIL = "fail", "Fail"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class JobKind(models.TextChoices):
    HOST_REFRESH = "host.refresh", "Host refresh"
    VM_SHUTDOWN = "vm.shutdown", "VM shutdown"
    VM_SAVE = "vm.save", "VM save"
    VM_RESTORE = "vm.restore", "VM restore"
    VM_DELETE = "vm.delete", "VM delete"
    VM_CLONE = "vm.clone", "VM clone"
    VM_CREATE = "vm.create", "VM create"
    VM_SNAPSHOT_CREATE = "vm.snapshot.create", "Snapshot"
    VM_SNAPSHOT_REVERT = "vm.snapshot.revert", "Snapshot revert"
    VM_SNAPSHOT_DELETE = "vm.snapshot.delete", "Snapshot delete"
    VM_SNAPSHOT_MERGE = "vm.snapshot.merge", "Disk chain merge"
    VM_BACKUP = "vm.backup", "Backup"
    VM_BACKUP_RESTORE = "vm.backup.restore", "Backup restore"
    VOLUME_CREATE = "volume.create", "Volume create"
    VOLUME_CLONE = "volume.clone", "Volume clone"
    VOLUME_CONVERT = "volume.convert", "Volume convert"
    VOLUME_WIPE = "volume.wipe", "Volume wipe"
    VOLUME_UPLOAD = "volume.upload", "Volume upload"
    LIBRARY_FETCH = "library.fetch", "Library image fetch"
    VM_MIGRATE = "vm.migrate", "VM migration"
    VM_MOVE_STORAGE = "vm.move_storage", "VM disk move"
    HOST_DRAIN = "host.drain", "Host drain"
    VM_HA_RESTART = "vm.ha_restart", "HA restart"


class AuditResult(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class Via(models.TextChoices):
    """The way an action reached the panel."""

    PAGE = "page", "Page"
    API = "api", "API"
    SOCKET = "socket", "Websocket"
    SCHEDULE = "schedule", "Schedule"
    JOB = "job", "Job"
    PANEL = "panel", "The panel"


class ProjectRole(models.TextChoices):
    OPERATOR = "operator", "Operator"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class ProcessRole(models.TextChoices):
    """The kinds of process that share the hosts out by leases (panel/leases.py)."""

    WATCHER = "watcher", "Host watcher"
    COLLECTOR = "collector", "Stats collector"


class NotificationKind(models.TextChoices):
    """What a subscription can ask to hear of."""

    JOB_FAILED = "job.failed", "A job failed"
    BACKUP_FAILED = "backup.failed", "A backup failed"
    BACKUP_MISSED = "backup.missed", "A scheduled backup was missed"
    HOST_DOWN = "host.down", "A host went down"
    HOST_UP = "host.up", "A host came back"
    VM_CRASHED = "vm.crashed", "A VM crashed"
    VM_STOPPED = "vm.stopped_outside", "A VM was stopped outside the panel"
    QUOTA_NEAR = "quota.near", "A project passed 90 % of a quota"
    HA_RESTART = "ha.restart", "HA restarted a VM on another host"


class DeliveryChannel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
