"""A VM's tags: short labels users give it (web, prod, db), as Proxmox has, to find and
filter VMs by. They are the panel's own metadata: kept on the VM's row, never written
to the domain on its host, so changing them needs no claim on the host; the right to
change the VM, the audit row and the push to browsers are as for any quick change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db import transaction

from panel import audit, rows
from panel.actors import Actor
from panel.exceptions import GoneError, ServiceError
from panel.permissions import CONFIG_CPU_MEMORY
from vms.models import VirtualMachine
from vms.services.common import vm_change
from vms.services.sync import publish_vm

TAG = re.compile(r"[a-z0-9._-]{1,32}")
MAX_TAGS = 16
RULE = (
    f"a tag is 1 to 32 lowercase letters, digits, '-', '_' or '.', and a VM has at most {MAX_TAGS}"
)


def _words(value: object) -> list[str]:
    """The tags asked for: a list of strings, or one string separated by commas or spaces."""
    if isinstance(value, str):
        return [word for word in re.split(r"[\s,]+", value) if word]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value]
    raise ServiceError(
        "Send the tags as a list of strings (or one string, separated by commas or spaces).",
        field="tags",
    )


def parse_tags(value: object) -> list[str]:
    """The tags value asks for, lowercased, without duplicates and sorted; ServiceError
    (400 on tags) saying which are not tags, or that there are too many."""
    tags = sorted({word.lower() for word in _words(value)})
    if bad := [tag for tag in tags if not TAG.fullmatch(tag)]:
        named = ", ".join(f"'{tag}'" for tag in bad)
        raise ServiceError(
            f"{named} {'is not a tag' if len(bad) == 1 else 'are not tags'}: {RULE}. "
            "Correct it and save again; the tags were not changed.",
            field="tags",
        )
    if len(tags) > MAX_TAGS:
        raise ServiceError(
            f"{len(tags)} tags are too many: {RULE}. Remove {len(tags) - MAX_TAGS} and save "
            "again; the tags were not changed.",
            field="tags",
        )
    return tags


def listed(tags: Iterable[str]) -> str:
    """Tags as the audit log names them ("none" for no tags)."""
    return ", ".join(tags) or "none"


def set_vm_tags(vm: VirtualMachine, value: object, *, actor: Actor) -> VirtualMachine:
    """Replace vm's tags with those value asks for (see parse_tags): audited as vm.tags
    ("old -> new") and pushed to the browsers watching it. The same tags again change
    nothing and write no audit row. Jobs running on the VM do not stand in the way."""
    with vm_change(
        vm, actor, "vm.tags", "change the tags of", right=CONFIG_CPU_MEMORY, while_jobs_run=True
    ):
        tags = parse_tags(value)
        with transaction.atomic():
            row = rows.lock(vm)
            if row is None:
                raise GoneError(f"{vm.name} was deleted meanwhile; its tags were not changed.")
            old, vm.tags = row.tags, tags
            if old == tags:
                return vm
            vm.save(update_fields=["tags"])
            audit.record(actor, "vm.tags", vm, detail=f"{listed(old)} -> {listed(tags)}")
            publish_vm(vm)
    return vm
