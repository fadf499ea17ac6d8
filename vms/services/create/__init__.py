"""Creating VMs: `virt-install` as a service.

Modules:
    checks   what a create request names, checked against what the actor may use
    request  create_vm(): the request checked, placed, its quota taken, its job queued
    job      run_create_job(): disks, install media, the domain defined and started;
             undo() and undo_abandoned() remove what a failed or abandoned job made
"""

from .checks import METHODS
from .job import first_output, run_create_job, undo, undo_abandoned
from .request import NAME_RE, create_vm

__all__ = [
    "METHODS",
    "NAME_RE",
    "create_vm",
    "first_output",
    "run_create_job",
    "undo",
    "undo_abandoned",
]
