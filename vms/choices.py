"""Enumerations of the VM app."""

from django.db import models


class VMState(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    SHUTOFF = "shutoff", "Shut off"
    CRASHED = "crashed", "Crashed"
    PMSUSPENDED = "pmsuspended", "Suspended (power management)"
    MISSING = "missing", "Missing"
