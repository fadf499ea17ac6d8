"""Hosts, jobs, the audit log and notifications."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .choices import (
    AuditResult,
    DeliveryChannel,
    DeliveryState,
    HostFencing,
    HostState,
    JobKind,
    JobState,
    NotificationKind,
    ProcessRole,
    ProjectRole,
    Via,
)
from .host_certificates import HostCertificates  # noqa: F401 - declared there
from .identity.factor_models import (  # noqa: F401 - declared there, panel's models
    RecoveryCode,
    SecurityPolicy,
    TotpDevice,
    WebAuthnCredential,
)


class Host(models.Model):
    """A libvirt host the panel manages, with the facts and checks last read from it."""

    name = models.CharField(max_length=100, unique=True)
    uri = models.CharField(max_length=500, unique=True)
    state = models.CharField(max_length=10, choices=HostState, default=HostState.UNKNOWN)
    domain_type = models.CharField(max_length=10, blank=True, default="")
    facts = models.JSONField(default=dict, blank=True)
    checks = models.JSONField(default=list, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_seen = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    # qemu+ssh hosts: the host key an admin confirmed ("type base64"), the only one
    # libvirt accepts, and since when; a different key the host offered since, until
    # an admin accepts it.
    # Database defaults too: rows written by code that predates a field (an older
    # release, a data migration) still insert.
    ssh_host_key = models.CharField(max_length=1000, blank=True, default="", db_default="")
    ssh_host_key_pinned_at = models.DateTimeField(null=True, blank=True)
    ssh_host_key_offered = models.CharField(max_length=1000, blank=True, default="", db_default="")
    # In maintenance, the host takes no new VMs (create, migration and restore to it are
    # refused, placement skips it) until an admin makes it active again.
    maintenance = models.BooleanField(default=False, db_default=False)
    maintenance_since = models.DateTimeField(null=True, blank=True)
    # HA (vms.services.ha): how the host is fenced; when the HA monitor last reached it
    # (with agent fencing: renewed the agent's lease); what it last found wrong; when its
    # HA VMs were last restarted elsewhere (the host lost, or confirmed off).
    fencing = models.CharField(
        max_length=10, choices=HostFencing, blank=True, default="", db_default=""
    )
    ha_reached_at = models.DateTimeField(null=True, blank=True)
    ha_note = models.CharField(max_length=500, blank=True, default="", db_default="")
    fenced_at = models.DateTimeField(null=True, blank=True)
    # The address (IP or host name) other hosts' QEMU reach this host's at when a VM
    # migrates here: its QEMU listens on it alone. Empty: the host part of its URI.
    migration_address = models.CharField(max_length=253, blank=True, default="", db_default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_up(self) -> bool:
        return self.state == HostState.UP

    @property
    def memory_total(self) -> int:
        return int(self.facts.get("memory_total_bytes", 0))

    @property
    def memory_free(self) -> int:
        return int(self.facts.get("memory_free_bytes", 0))

    @property
    def memory_reserved(self) -> int:
        return int(self.facts.get("reserved_memory_bytes", 0))

    @property
    def memory_for_guests(self) -> int:
        return max(self.memory_total - self.memory_reserved, 0)

    @property
    def check_summary(self) -> dict[str, int]:
        counts = {"pass": 0, "warn": 0, "fail": 0}
        for check in self.checks:
            counts[check.get("status", "warn")] = counts.get(check.get("status", "warn"), 0) + 1
        return counts


class HostLease(models.Model):
    """Which watcher or collector process has a host, and until when (panel/leases.py)."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="leases")
    role = models.CharField(max_length=10, choices=ProcessRole)
    # The process that holds the lease, or held it last ("" when none ever did).
    owner = models.CharField(max_length=200, blank=True, default="")
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "role"], name="one_lease_per_host_and_role")
        ]
        indexes = [models.Index(fields=["role", "owner"], name="lease_role_owner")]

    def __str__(self) -> str:
        return f"{self.role} lease of host {self.host_id}: {self.owner or 'nobody'}"


class ProcessHeartbeat(models.Model):
    """A watcher or collector process, alive while last_seen is recent (panel/leases.py)."""

    name = models.CharField(max_length=200, unique=True)
    role = models.CharField(max_length=10, choices=ProcessRole)
    last_seen = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["role", "last_seen"], name="heartbeat_role_seen")]

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


class Project(models.Model):
    """A team: owns VMs and volumes, has members with roles and a quota."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    allowed_hosts = models.ManyToManyField(
        Host, blank=True, related_name="projects_allowed", help_text="Empty: every host."
    )
    allowed_pools = models.ManyToManyField(
        "storage.StoragePool",
        blank=True,
        related_name="projects_allowed",
        help_text="Empty: every pool.",
    )
    allowed_networks = models.ManyToManyField(
        "networking.Network",
        blank=True,
        related_name="projects_allowed",
        help_text="Empty: every network.",
    )
    require_second_factor = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Members must set up a second factor before using the panel.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Quota(models.Model):
    """How much a project may use; a blank limit means no limit."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="quota")
    vms = models.PositiveIntegerField(null=True, blank=True)
    vcpus = models.PositiveIntegerField(null=True, blank=True)
    memory_mib = models.PositiveBigIntegerField(null=True, blank=True)
    disk_gib = models.PositiveBigIntegerField(null=True, blank=True)
    backup_gib = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Backups and snapshots, GiB."
    )

    def __str__(self) -> str:
        return f"quota of {self.project}"


class Membership(models.Model):
    """A user's role in one project."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ProjectRole)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="one_role_per_project")
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class Role(models.Model):
    """A role an administrator defines: a named set of privileges (panel/privileges.py).
    own_only: its holder acts only on the VMs and volumes they own or were granted, as a
    member does (seeing and watching consoles still reach the whole project)."""

    name = models.CharField(max_length=50, unique=True)
    description = models.TextField(blank=True, default="")
    privileges = models.JSONField(default=list, blank=True)
    own_only = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Grant(models.Model):
    """A role given in a project to a user or a group, on the whole project or on one VM:
    builtin names a built-in role (privileges.BUILTIN_ROLES), else role is a custom one."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="panel_grants",
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="panel_grants"
    )
    builtin = models.CharField(max_length=10, choices=ProjectRole, blank=True, default="")
    role = models.ForeignKey(
        Role, null=True, blank=True, on_delete=models.PROTECT, related_name="grants"
    )
    vm = models.ForeignKey(
        "vms.VirtualMachine",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="panel_grants",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=True) ^ models.Q(group__isnull=True),
                name="grant_to_user_or_group",
            ),
            models.CheckConstraint(
                condition=models.Q(builtin="") ^ models.Q(role__isnull=True),
                name="grant_of_one_role",
            ),
        ]

    def __str__(self) -> str:
        who = self.user or self.group
        on = f" on {self.vm}" if self.vm_id else ""
        return f"{who} is {self.role_name} of {self.project}{on}"

    @property
    def role_name(self) -> str:
        return self.builtin or (self.role.name if self.role else "")


class Job(models.Model):
    """A piece of long work run by a Celery task, with its progress and log."""

    kind = models.CharField(max_length=50)
    state = models.CharField(max_length=10, choices=JobState, default=JobState.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True, default="")
    log = models.TextField(blank=True, default="")
    target = models.CharField(max_length=200, blank=True, default="")
    host = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    result = models.JSONField(default=dict, blank=True)
    # What the task needs and nobody may read (cloud-init user-data, kickstarts): never
    # serialized, emptied once used and when the job ends.
    secrets = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The Celery task that runs it and the id of the message last sent for it: a queued
    # job that no worker took is sent again (jobs.resend_lost).
    task = models.CharField(max_length=100, blank=True, default="")
    task_id = models.CharField(max_length=64, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["state", "kind"]),
            # The newest first (the dashboard, the jobs page), a VM's or a volume's latest
            # job (its page), and a project's (what a member sees).
            models.Index(fields=["-created", "-id"], name="job_newest"),
            models.Index(fields=["target", "-created"], name="job_target_newest"),
            models.Index(fields=["project", "-created"], name="job_project_newest"),
        ]
        constraints = [
            # Per-VM and per-volume serialisation: two requests that both passed the
            # "is it busy?" check cannot both queue a job; the second insert fails.
            models.UniqueConstraint(
                fields=["target"],
                condition=models.Q(state__in=["queued", "running"])
                & (models.Q(target__startswith="vm:") | models.Q(target__startswith="volume:")),
                name="one_active_job_per_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.state in {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}

    def get_kind_display(self) -> str:
        try:
            return JobKind(self.kind).label
        except ValueError:
            return self.kind


class ActionLock(models.Model):
    """A short claim on a target (``vm:<uuid>``) while a quick action runs on it."""

    target = models.CharField(max_length=200, unique=True)
    what = models.CharField(max_length=200)
    since = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.target}: {self.what}"


class AuditEvent(models.Model):
    """One action someone took (or was refused), written with the change it records."""

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, default="")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=300, blank=True, default="")
    result = models.CharField(max_length=10, choices=AuditResult, default=AuditResult.SUCCESS)
    detail = models.TextField(blank=True, default="")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=10, choices=Via, blank=True, default="")

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.target}"


class Subscription(models.Model):
    """What a user wants to hear of (kinds, in one project or all they see) and where: in
    the panel always, by email and by a webhook if asked."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions"
    )
    # None: every project the user sees (and, for an admin, the hosts).
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="subscriptions"
    )
    kinds = models.JSONField(default=list, blank=True)
    email = models.BooleanField(default=False)
    webhook_url = models.CharField(max_length=500, blank=True, default="")
    # Signs each webhook call (HMAC-SHA256); made by the panel, shown to the owner only.
    webhook_secret = models.CharField(max_length=100, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"subscription #{self.pk} of {self.user}"

    def wants(self, kind: str) -> bool:
        return kind in (self.kinds or [])


class Notification(models.Model):
    """One thing a user was told: in the panel's bell until read, and sent by the
    deliveries of their subscriptions."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=30, choices=NotificationKind)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    link = models.CharField(max_length=300, blank=True, default="")
    # What it is about: "job:<id>", "vm:<uuid>", "host:<id>", "quota:<project>:<field>".
    target = models.CharField(max_length=200, blank=True, default="")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Repeats of the same kind and target held back since this one (panel.notifications
    # .throttle); a summary tells them once the window ends.
    repeats = models.PositiveIntegerField(default=0)
    summary = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["user", "read_at"], name="notification_unread"),
            models.Index(fields=["kind", "target", "created"], name="notification_repeat"),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.title}"


class Delivery(models.Model):
    """One notification sent by email or webhook for a subscription, with every attempt
    and the answer it got."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries"
    )
    channel = models.CharField(max_length=10, choices=DeliveryChannel)
    state = models.CharField(max_length=10, choices=DeliveryState, default=DeliveryState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # One entry per attempt: {"at", "status", "answer", "error"}.
    log = models.JSONField(default=list, blank=True)
    next_try = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.channel} delivery #{self.pk}"


# Identity models live in their package; importing them here registers them with the app.
from .identity.account_models import ApiToken, OidcIdentity, UserSession  # noqa: E402, F401
from .identity.models import (  # noqa: E402, F401
    DirectoryAccount,
    DirectoryGrant,
    DirectoryMapping,
    DirectorySource,
)
