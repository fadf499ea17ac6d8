"""The VM app's services: what the views, the API, the tasks and the other apps call.

Modules:
    sync        the VM rows kept in step with the hosts, and the messages to browsers
    common      what the services share: readable host errors, rights, claims, jobs
    lifecycle   power verbs, autostart, assigning, XML, VNC password, deleting
    clones      cloning a shut-off VM
    create      creating a VM from the wizard's or the API's request
    disks       attaching, detaching and changing a VM's disks and media
    snapshots   a VM's snapshots: taking, reverting, deleting, and their rows
    merges      shortening a disk's backing chain (block commit or pull)
    backups     backups of a VM to a pool, and deleting them
    restores    restoring a VM from a backup, as a new VM or in place
    schedules   backup and snapshot schedules, and pruning by retention
    retention   when a cron schedule fires, and which backups a policy keeps
    migrate     moving a VM to another host
    move_storage  moving one of a VM's disks to another pool of its host
    placement   which host a VM goes to (spread or pack, what the host must hold, affinity)
    affinity    a project's affinity groups: VMs kept apart or together
    drain       maintenance: a host's drain plan, the drain job, making it active again
    tuning      a VM's vCPUs, memory, pinning, NUMA, I/O and bandwidth limits
    nics        a VM's network interfaces: attaching, detaching, link state, listing
    tags        a VM's tags: the labels users give it, checked and replaced
    alerts      what subscribers hear of VMs: crashes, stops outside the panel, missed backups

This module re-exports the names callers outside the package use; the feature modules
are imported by name (``from vms.services import snapshots``).
"""

from .clones import clone_vm, run_clone_job, undo_abandoned_clone
from .common import (
    apply_info,
    claimed,
    on_vm_host,
    queue_vm_job,
    require_right,
    reread,
    undo_abandoned,
)
from .lifecycle import (
    ACTIONS,
    DIRECT_ACTIONS,
    JOB_ACTIONS,
    assign_vm,
    definition_xml,
    delete_vm,
    edit_xml,
    perform_action,
    run_action_job,
    run_delete_job,
    set_vm_autostart,
    set_vnc_password,
)
from .sync import (
    BULK_EVENT_THRESHOLD,
    UNASSIGNED,
    VM_SYNC_FIELDS,
    mark_missing,
    publish_vm,
    refresh_details,
    serialize_vm,
    still_there,
    sync_domain,
    sync_domains,
    unassigned_project,
    vm_messages,
)

__all__ = [
    "ACTIONS",
    "BULK_EVENT_THRESHOLD",
    "DIRECT_ACTIONS",
    "JOB_ACTIONS",
    "UNASSIGNED",
    "VM_SYNC_FIELDS",
    "apply_info",
    "assign_vm",
    "claimed",
    "clone_vm",
    "definition_xml",
    "delete_vm",
    "edit_xml",
    "mark_missing",
    "on_vm_host",
    "perform_action",
    "publish_vm",
    "queue_vm_job",
    "refresh_details",
    "reread",
    "require_right",
    "run_action_job",
    "run_clone_job",
    "run_delete_job",
    "serialize_vm",
    "set_vm_autostart",
    "set_vnc_password",
    "still_there",
    "sync_domain",
    "sync_domains",
    "unassigned_project",
    "undo_abandoned",
    "undo_abandoned_clone",
    "vm_messages",
]
