"""Storage pools and volumes as the panel last saw them on their host."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from panel.models import Host, Project


class StoragePool(models.Model):
    """A libvirt storage pool on one host; sizes in bytes."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="pools")
    name = models.CharField(max_length=200)
    uuid = models.UUIDField(null=True, blank=True)
    type = models.CharField(max_length=20)
    state = models.CharField(max_length=20, default="inactive")
    target_path = models.CharField(max_length=1000, blank=True, default="")
    capacity = models.BigIntegerField(default=0)
    allocation = models.BigIntegerField(default=0)
    available = models.BigIntegerField(default=0)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    synced = models.DateTimeField(null=True, blank=True)
    # An admin's word that the pool's directory is one storage every host with a pool at
    # the same path sees (NFS, a cluster file system, a SAN): a running VM whose disks
    # all sit in such pools on both hosts migrates without copying them.
    shared_storage = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "name"], name="pool_unique_name_per_host"),
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"


class FormatSource(models.TextChoices):
    """Who set a volume's recorded format: never the file's own content."""

    CREATED = "created", "made by the panel"
    DECLARED = "declared", "declared by its owner at upload (content checked)"
    ASSIGNED = "assigned", "declared by an admin when assigning it (content checked)"
    FOUND = "found", "found on the host: libvirt's guess from the content, not trusted"


class Volume(models.Model):
    """A volume inside a storage pool; sizes in bytes.

    format and backing are what the panel recorded (format_source says who set them); a
    probe of the file never changes them. A found volume is unusable until an admin
    assigns it.
    """

    pool = models.ForeignKey(StoragePool, on_delete=models.CASCADE, related_name="volumes")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="volumes"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_volumes",
    )
    name = models.CharField(max_length=255)
    key = models.CharField(max_length=1000, blank=True, default="")
    path = models.CharField(max_length=1000, blank=True, default="")
    format = models.CharField(max_length=20, blank=True, default="")
    format_source = models.CharField(
        max_length=10,
        choices=FormatSource.choices,
        default=FormatSource.FOUND,
        help_text="Who set the format; a found volume is not trusted until an admin assigns it.",
    )
    capacity = models.BigIntegerField(default=0)
    allocation = models.BigIntegerField(default=0)
    backing = models.JSONField(
        default=list,
        blank=True,
        help_text="The backing chain the panel recorded (checked), nearest first: "
        "[{path, format}]. For a found volume, libvirt's untrusted view.",
    )
    shared = models.BooleanField(
        default=False, help_text="A published image (ISO, cloud image) every project may use."
    )
    info = models.JSONField(
        default=dict, blank=True, help_text="qemu-img's last view: chain, sizes, snapshots."
    )
    check_result = models.JSONField(
        default=dict, blank=True, help_text="The last qemu-img check, with its time."
    )
    synced = models.DateTimeField(
        null=True, blank=True, help_text="Last seen on the host; empty while being created."
    )

    class Meta:
        ordering = ["pool__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "name"], name="volume_unique_name_per_pool"),
        ]

    def __str__(self) -> str:
        return self.name


class ImageKind(models.TextChoices):
    ISO = "iso", "Installer ISO"
    CLOUD = "cloud", "Cloud image"


class ImageState(models.TextChoices):
    FETCHING = "fetching", "Fetching"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class LibraryImage(models.Model):
    """An ISO or cloud image an admin published in a pool, for projects to install from.

    format is what the admin stated (or the volume's recorded format), checked against the
    file's header; never read from it. public: every project may use it; otherwise only
    the projects listed.
    """

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=ImageKind.choices)
    pool = models.ForeignKey(StoragePool, on_delete=models.CASCADE, related_name="images")
    volume = models.OneToOneField(
        Volume, null=True, blank=True, on_delete=models.SET_NULL, related_name="library_image"
    )
    format = models.CharField(max_length=20)
    os_variant = models.CharField(max_length=100, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    source_url = models.CharField(max_length=2000, blank=True, default="")
    sums_url = models.CharField(max_length=2000, blank=True, default="")
    public = models.BooleanField(default=False)
    projects = models.ManyToManyField(Project, blank=True, related_name="library_images")
    state = models.CharField(max_length=10, choices=ImageState.choices, default=ImageState.FETCHING)
    message = models.CharField(max_length=500, blank=True, default="")
    job = models.ForeignKey(
        "panel.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name
