"""Tuning a VM: vCPU and emulator pinning, vCPU count, memory (balloon), disk I/O limits,
NUMA policy; and what the host offers to draw them over. Like virsh vcpupin, emulatorpin,
setvcpus, setmem, blkdeviotune and numatune, each with live and/or persistent scope.

Every change needs "change" on the VM, is validated before libvirt is asked (400 naming
the field, nothing changed), and is audited with what was applied. vCPUs and memory, and
their maximums, stay within the limits of the template the VM was made from (400) and
within the project's quota, which counts what each VM may grow to (403).

Modules:
    limits   the template, quota and host-reserve limits every change stays within
    cpus     the tab's reading, pinning, vCPUs, NUMA policy
    memory   memory, its maximum, huge pages
    devices  disk I/O limits and NIC bandwidth
"""

from .cpus import pin_emulator, pin_vcpus, set_max_vcpus, set_numatune, set_vcpus, vm_tuning
from .devices import set_iotune, set_nic_bandwidth
from .limits import Scope
from .memory import set_hugepages, set_max_memory, set_memory

__all__ = [
    "Scope",
    "pin_emulator",
    "pin_vcpus",
    "set_hugepages",
    "set_iotune",
    "set_max_memory",
    "set_max_vcpus",
    "set_memory",
    "set_nic_bandwidth",
    "set_numatune",
    "set_vcpus",
    "vm_tuning",
]
