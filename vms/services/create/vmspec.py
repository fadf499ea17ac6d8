"""Creating a VM, the checked VM as its create job carries it: `VMSpec` is the job's result
(JSON), which `request` writes and `job` reads. Jobs already queued hold this shape: keep
it, or read the old one too.

The install's secrets (user-data, meta-data, network-config, kickstarts) are never part of
it: they are `InstallSecrets`, the job's secrets.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from vms.services.create.spec import Firmware


class NewDiskSpec(TypedDict):
    """A volume the job makes: in pool (its name; pool_id its row), capacity in bytes."""

    pool: str
    pool_id: int
    name: str
    capacity: int
    format: str
    preallocation: str
    existing: Literal[False]


class ExistingDiskSpec(TypedDict):
    """A volume the VM takes, booted as its recorded format with its recorded chain."""

    path: str
    format: str
    backing: list[dict[str, str]]
    existing: Literal[True]


DiskSpec = NewDiskSpec | ExistingDiskSpec


class IsoSpec(TypedDict):
    method: Literal["iso"]
    iso_path: str


class UrlSpec(TypedDict):
    """The tree's kernel and initrd are fetched by the job; its kickstart is a secret."""

    method: Literal["url"]
    location: str
    extra_args: str


class KernelSpec(TypedDict):
    method: Literal["kernel"]
    kernel: str
    initrd: str
    cmdline: str


class PxeSpec(TypedDict):
    method: Literal["pxe"]


class ImportSpec(TypedDict):
    method: Literal["import"]
    volume_chain: list[dict[str, str]]
    volume_path: str
    volume_format: str


class CloudImageSpec(TypedDict):
    """The image the boot disk is made from; the seed's documents are secrets."""

    method: Literal["cloud-image"]
    image_path: str
    image_format: str
    image_chain: list[dict[str, str]]
    image_capacity: int
    image_pool: str
    linked: bool


InstallSpec = IsoSpec | UrlSpec | KernelSpec | PxeSpec | ImportSpec | CloudImageSpec


class InstallSecrets(TypedDict, total=False):
    """What an install holds of passwords, hashes and kickstarts: the job's secrets, never
    its result, log or audit rows."""

    user_data: str
    meta_data: str
    network_config: str
    kickstart: str


class Reserve(TypedDict, total=False):
    """The quota a create job holds: {} once handed over to the VM, or given back."""

    vms: int
    vcpus: int
    memory_mib: int
    disk_gib: int


class MadeVolume(TypedDict):
    """A volume the job made (written down before libvirt makes it)."""

    pool: str
    name: str
    format: NotRequired[str]
    backing: NotRequired[list[dict[str, str]]]


class Made(TypedDict):
    volumes: list[MadeVolume]
    domain: bool


class VMSpec(TypedDict):
    """A create job's result: the checked VM (vm its new UUID; host, project, owner and
    template ids), the quota it holds and what it made so far."""

    vm: str
    vm_name: str
    host: int
    project: int
    owner: int | None
    template: int | None
    vcpus: int
    memory_mib: int
    firmware: Firmware
    os_variant: str
    disks: list[DiskSpec]
    networks: list[dict[str, Any]]
    install: InstallSpec
    start: bool
    reserve: Reserve
    made: Made
    affinity_group: int | None
