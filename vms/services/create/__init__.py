"""Creating VMs: `virt-install` as a service.

Modules:
    spec     the request as sent: CreateRequest.parse() checks its shape
    vmspec   the checked VM its job carries (VMSpec, the job's result) and its secrets
    checks   what a create request names, checked against what the actor may use
    request  create_vm(): the request checked, placed, its quota taken, its job queued
    job      run_create_job(): disks, install media, the domain defined and started;
             undo() and undo_abandoned() remove what a failed or abandoned job made
"""

from .job import first_output, run_create_job, undo, undo_abandoned
from .request import create_vm
from .spec import METHODS, NAME_RE, CreateRequest

__all__ = [
    "METHODS",
    "NAME_RE",
    "CreateRequest",
    "create_vm",
    "first_output",
    "run_create_job",
    "undo",
    "undo_abandoned",
]
