"""Privileges: the named rights a role grants, as the permission module checks them.

A role is a set of privileges. The built-in roles keep the meaning they had before
roles were sets; administrators may define more (panel.models.Role). An API token may
carry a subset of privileges it never exceeds (its ceiling), whatever its user holds.

ADMINISTER is not granted by any project role: it is what a superuser holds over the
whole panel (hosts, pools, networks, users, every project). A token of an administrator
whose ceiling lacks it acts with no more than the ceiling's privileges.
"""

from __future__ import annotations

VIEW = "view"
POWER = "power"
CONSOLE = "console"
CONSOLE_INPUT = "console_input"
CONFIG_CPU_MEMORY = "config_cpu_memory"
CONFIG_DISKS = "config_disks"
CONFIG_NETWORK = "config_network"
SNAPSHOT = "snapshot"
BACKUP = "backup"
MIGRATE = "migrate"
ALLOCATE = "allocate"
VOLUME_READ = "volume_read"
ALLOCATE_SPACE = "allocate_space"
USE_NETWORK = "use_network"
AUDIT = "audit"
MANAGE_PROJECT = "manage_project"
ADMINISTER = "administer"

# name: what it lets its holder do, as the role editor and the API describe it
CATALOGUE: dict[str, str] = {
    VIEW: "See the project's VMs, volumes and jobs",
    POWER: "Start, shut down, reboot, pause and resume VMs",
    CONSOLE: "Watch a VM's serial and graphical consoles",
    CONSOLE_INPUT: "Type into a VM's consoles",
    CONFIG_CPU_MEMORY: "Change a VM's vCPUs, memory and tuning",
    CONFIG_DISKS: "Attach, detach and resize a VM's disks and media",
    CONFIG_NETWORK: "Add, remove and change a VM's network interfaces",
    SNAPSHOT: "Take, revert and delete snapshots",
    BACKUP: "Take, restore and delete backups and their schedules",
    MIGRATE: "Migrate VMs between hosts and move their storage",
    ALLOCATE: "Create and delete VMs",
    VOLUME_READ: "Download, clone and make overlays of volumes",
    ALLOCATE_SPACE: "Create, upload, resize and delete volumes",
    USE_NETWORK: "Connect VMs to the project's networks",
    AUDIT: "Read the project's audit log and every job of the project",
    MANAGE_PROJECT: "Manage the project's members and grants",
    ADMINISTER: "Administer the whole panel (administrators only)",
}

PROJECT_PRIVILEGES = frozenset(CATALOGUE) - {ADMINISTER}

# The built-in roles: (privileges, whether they reach only the objects their holder owns
# or was granted). Members see the whole project but act on their own VMs and volumes.
BUILTIN_ROLES: dict[str, tuple[frozenset[str], bool]] = {
    "operator": (PROJECT_PRIVILEGES, False),
    "member": (PROJECT_PRIVILEGES - {AUDIT, MANAGE_PROJECT}, True),
    "viewer": (frozenset({VIEW, CONSOLE}), False),
}

# The choices the API offers: a token may be limited to any name; a role holds project
# privileges only (named apart in the OpenAPI document).
TOKEN_CHOICES = list(CATALOGUE)
ROLE_CHOICES = sorted(PROJECT_PRIVILEGES)
