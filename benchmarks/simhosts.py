"""Simulated hosts for the benchmarks: node files for libvirt's test:/// driver, one per
host, holding numbered domains (each with a disk and a NIC) in a fixed mix of states.
vm_inventory.py, monitoring.py and load.py fill their hosts with them; monitoring.py
replaces vm_state to have every domain running."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

STATE_CODES = {"running": 1, "paused": 3, "shutoff": 5}


def vm_state(g: int) -> str:
    """60% running, 30% shut off, 10% paused."""
    r = g % 10
    return "running" if r < 6 else "shutoff" if r < 9 else "paused"


def vm_name(host_no: int, g: int) -> str:
    return f"h{host_no:02d}-vm{g:05d}"


def node_xml(host_no: int, first: int, count: int, rng: random.Random) -> str:
    """A test:/// node file holding count domains numbered from first."""
    parts = [
        "<node>\n",
        "  <cpu><mhz>2400</mhz><model>x86_64</model><nodes>2</nodes><sockets>2</sockets>"
        "<cores>16</cores><threads>2</threads></cpu>\n",
        f"  <memory>{1024 * 1024 * 1024}</memory>\n",  # KiB: 1 TiB
    ]
    for g in range(first, first + count):
        uid = uuid.UUID(int=rng.getrandbits(128), version=4)
        mem = 512 * (1 + g % 8)
        parts.append(
            "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
            f"<name>{vm_name(host_no, g)}</name><uuid>{uid}</uuid>"
            f"<memory unit='MiB'>{mem}</memory><currentMemory unit='MiB'>{mem}</currentMemory>"
            f"<vcpu>{1 + g % 4}</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os>"
            "<devices>"
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='/var/lib/libvirt/images/{vm_name(host_no, g)}.qcow2'/>"
            "<target dev='vda' bus='virtio'/></disk>"
            "<interface type='network'>"
            f"<mac address='52:54:00:{host_no:02x}:{(g >> 8) & 0xFF:02x}:{g & 0xFF:02x}'/>"
            "<source network='default'/><model type='virtio'/></interface>"
            "</devices>"
            f"<test:runstate>{STATE_CODES[vm_state(g)]}</test:runstate>"
            "</domain>\n"
        )
    parts.append("</node>\n")
    return "".join(parts)


def write_nodes(directory: Path, vms: int, hosts: int) -> list[Path]:
    rng = random.Random(20261125)
    directory.mkdir(parents=True, exist_ok=True)
    paths, first = [], 0
    for n in range(hosts):
        count = vms // hosts + (1 if n < vms % hosts else 0)
        path = directory / f"node-{n + 1:02d}.xml"
        path.write_text(node_xml(n + 1, first, count, rng))
        paths.append(path)
        first += count
    return paths
