"""Virtual machines as the panel last saw them on their host."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from panel.models import Host, Project

from .choices import BackupKind, BackupMethod, BackupState, ScheduleKind, VMState


class VirtualMachine(models.Model):
    """A libvirt domain mirrored from its host; the id is the libvirt UUID."""

    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=200)
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="vms")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="vms"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_vms",
        help_text="Who created it: a member may act on the VMs they own.",
    )
    granted_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="granted_vms",
        help_text="Members an operator allowed to act on this VM too.",
    )
    state = models.CharField(max_length=12, choices=VMState, default=VMState.SHUTOFF)
    domain_type = models.CharField(max_length=10, blank=True, default="")
    firmware = models.CharField(max_length=10, blank=True, default="bios")
    vcpus = models.PositiveIntegerField(default=1)
    memory_mib = models.PositiveIntegerField(default=0)
    max_vcpus = models.PositiveIntegerField(
        default=0, help_text="The most vCPUs it may grow to (0: not read yet); quotas count it."
    )
    max_memory_mib = models.PositiveIntegerField(
        default=0, help_text="The most memory it may grow to (0: not read yet); quotas count it."
    )
    template = models.ForeignKey(
        "Template",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="vms",
        help_text="The template it was made from: its limits bound the VM's tuning.",
    )
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    disks = models.JSONField(default=list, blank=True)
    nics = models.JSONField(default=list, blank=True)
    graphics = models.JSONField(default=list, blank=True)
    ips = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(
        default=list,
        blank=True,
        help_text="Labels users give it (panel metadata, sorted; see vms.services.tags).",
    )
    xml = models.TextField(blank=True, default="")
    synced = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    # HA (vms.services.ha): restarted on another host when its own is lost, from the
    # definition (inactive XML) the panel keeps here.
    ha = models.BooleanField(default=False, db_default=False)
    ha_definition = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["host", "name"]),
            models.Index(fields=["state"]),
            # The list's default order, for everyone and per project.
            models.Index(fields=["name", "id"]),
            models.Index(fields=["project", "name", "id"]),
        ]

    def __str__(self) -> str:
        return self.name


class Template(models.Model):
    """What admins offer for self-service: an install source, defaults and limits, and
    which projects, pools and networks may be used with it."""

    SOURCES = [("cloud-image", "Cloud image"), ("iso", "ISO installer"), ("url", "Install tree")]

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    source = models.CharField(max_length=20, choices=SOURCES, default="cloud-image")
    image = models.ForeignKey(
        "storage.Volume",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="templates",
        help_text="The cloud image or ISO volume.",
    )
    location = models.URLField(blank=True, default="", help_text="The install tree (url source).")
    kickstart = models.TextField(blank=True, default="")
    os_variant = models.CharField(max_length=100, blank=True, default="")
    firmware = models.CharField(max_length=10, default="bios")
    vcpus = models.PositiveIntegerField(default=1)
    memory_mib = models.PositiveIntegerField(default=1024)
    disk_gib = models.PositiveIntegerField(default=10)
    max_vcpus = models.PositiveIntegerField(default=4)
    max_memory_mib = models.PositiveIntegerField(default=8192)
    max_disk_gib = models.PositiveIntegerField(default=100)
    pools = models.ManyToManyField(
        "storage.StoragePool", blank=True, related_name="templates", help_text="Where disks may go."
    )
    networks = models.ManyToManyField("networking.Network", blank=True, related_name="templates")
    projects = models.ManyToManyField(
        Project, blank=True, related_name="templates", help_text="Who may use it."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Snapshot(models.Model):
    """A libvirt snapshot of a VM, mirrored from its host after each snapshot job."""

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=64)
    description = models.TextField(blank=True, default="")
    parent = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=20, blank=True, default="")
    kind = models.CharField(max_length=10, default="internal")
    memory = models.BooleanField(default=False)
    current = models.BooleanField(default=False)
    created = models.DateTimeField(null=True, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    disks = models.JSONField(default=list, blank=True)
    depth = models.PositiveSmallIntegerField(default=0, help_text="Level in the tree (0: a root).")
    position = models.PositiveIntegerField(default=0, help_text="Order in the tree, parents first.")

    class Meta:
        ordering = ["vm", "position"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "name"], name="vms_snapshot_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.vm.name}/{self.name}"


class BackupSchedule(models.Model):
    """When to snapshot or back up a VM, or every VM of a project, and how many to keep."""

    vm = models.ForeignKey(
        VirtualMachine,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="backup_schedules",
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="backup_schedules")
    kind = models.CharField(max_length=10, choices=ScheduleKind, default=ScheduleKind.BACKUP)
    pool = models.ForeignKey(
        "storage.StoragePool",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="backup_schedules",
        help_text="Where backups go (backups only).",
    )
    minute = models.CharField(max_length=64, default="0")
    hour = models.CharField(max_length=64, default="2")
    day_of_month = models.CharField(max_length=64, default="*")
    month_of_year = models.CharField(max_length=64, default="*")
    day_of_week = models.CharField(max_length=64, default="*")
    keep_last = models.PositiveIntegerField(default=7)
    keep_daily = models.PositiveIntegerField(default=0)
    keep_weekly = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)
    last_run = models.DateTimeField(null=True, blank=True)
    next_run = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["enabled", "next_run"])]

    def __str__(self) -> str:
        return f"{self.kind} of {self.vm.name if self.vm else self.project.name} at {self.cron}"

    @property
    def cron(self) -> str:
        return " ".join(
            (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        )


class Backup(models.Model):
    """A consistent copy of a VM's disks and definition in a backup pool: full, or
    incremental (only the clusters written since its parent, the backup it builds on)."""

    vm = models.ForeignKey(
        VirtualMachine, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups"
    )
    vm_uuid = models.UUIDField()
    vm_name = models.CharField(max_length=200)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups"
    )
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="backups")
    pool = models.ForeignKey(
        "storage.StoragePool", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    schedule = models.ForeignKey(
        BackupSchedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups"
    )
    job = models.ForeignKey("panel.Job", null=True, blank=True, on_delete=models.SET_NULL)
    state = models.CharField(max_length=10, choices=BackupState, default=BackupState.RUNNING)
    method = models.CharField(max_length=10, choices=BackupMethod, blank=True, default="")
    kind = models.CharField(max_length=12, choices=BackupKind, default=BackupKind.FULL)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.RESTRICT,
        related_name="children",
        help_text="The backup this incremental one builds on (its copies lie below these).",
    )
    checkpoint = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="The libvirt checkpoint made with it, where the next incremental starts.",
    )
    note = models.TextField(
        blank=True, default="", help_text="Why it is a full copy when it could have built on one."
    )
    message = models.TextField(blank=True, default="")
    xml = models.TextField(blank=True, default="", help_text="The VM's definition when copied.")
    disks = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"target", "source", "volume", "path", "format", "capacity", "size"}]',
    )
    size = models.BigIntegerField(default=0, help_text="Bytes the copies take in the pool.")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds the copy took.")
    consistent_at = models.DateTimeField(
        null=True, blank=True, help_text="The instant the copied disks show."
    )
    rpo_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Achieved RPO: seconds since the previous good backup's point in time "
        "(the data a failure just before this backup would have lost).",
    )
    verify = models.JSONField(
        default=list,
        blank=True,
        help_text="Per disk when taken: qemu-img check, and the SHA-256 of its copy's file.",
    )
    verified = models.JSONField(
        default=dict,
        blank=True,
        help_text='The last verification: {"at", "ok", "disks": [{"target", "files", '
        '"sha256", "same_as_before", "summary"}]}.',
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["vm", "state", "created"])]

    def __str__(self) -> str:
        return f"backup #{self.pk} of {self.vm_name}"


class AffinityGroup(models.Model):
    """VMs of a project that placement keeps apart (each on its own host) or together
    (on one host)."""

    APART = "apart"
    TOGETHER = "together"
    KINDS = [(APART, "Apart (anti-affinity)"), (TOGETHER, "Together (affinity)")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="affinity_groups")
    name = models.CharField(max_length=63)
    kind = models.CharField(max_length=10, choices=KINDS, default=APART)
    vms = models.ManyToManyField(VirtualMachine, blank=True, related_name="affinity_groups")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="one_affinity_group_name")
        ]

    def __str__(self) -> str:
        return self.name
