"""The one package that talks to libvirt.

Everything above it (services, tasks) calls these functions with plain values
and gets frozen dataclasses back; libvirt errors arrive as our exceptions.
"""

from .connection import check_uri
from .console import ConsoleStream, open_console
from .domains import (
    create_transient,
    define_domain,
    delete_domain,
    destroy_domain,
    domain_xml,
    get_domain,
    list_domains,
    start_domain,
    undefine_domain,
)
from .errors import Conflict, HostUnavailable, HypervisorError, InvalidURI, NotFound
from .host import host_facts, host_report, is_local, reserved_memory_bytes
from .inventory import list_networks, list_pools, read_inventory
from .lifecycle import (
    domain_details,
    reboot_domain,
    redefine_domain,
    reset_domain,
    restore_domain,
    resume_domain,
    save_domain,
    set_autostart,
    shutdown_domain,
    suspend_domain,
    wait_for_state,
)
from .specs import (
    AddressInfo,
    BlockInfo,
    Check,
    DiskSpec,
    DomainDetails,
    DomainInfo,
    DomainSpec,
    HostFacts,
    HostReport,
    Inventory,
    NetworkInfo,
    NicSpec,
    PoolInfo,
    VolumeInfo,
)
from .watch import DomainEvent, Watch, watch_domains

__all__ = [
    "AddressInfo",
    "BlockInfo",
    "Check",
    "Conflict",
    "ConsoleStream",
    "DiskSpec",
    "DomainDetails",
    "DomainEvent",
    "DomainInfo",
    "DomainSpec",
    "HostFacts",
    "HostReport",
    "HostUnavailable",
    "HypervisorError",
    "InvalidURI",
    "Inventory",
    "NetworkInfo",
    "NicSpec",
    "NotFound",
    "PoolInfo",
    "VolumeInfo",
    "Watch",
    "check_uri",
    "create_transient",
    "define_domain",
    "delete_domain",
    "destroy_domain",
    "domain_xml",
    "get_domain",
    "host_facts",
    "host_report",
    "is_local",
    "list_domains",
    "list_networks",
    "list_pools",
    "open_console",
    "read_inventory",
    "reserved_memory_bytes",
    "start_domain",
    "undefine_domain",
    "domain_details",
    "reboot_domain",
    "redefine_domain",
    "reset_domain",
    "restore_domain",
    "resume_domain",
    "save_domain",
    "set_autostart",
    "shutdown_domain",
    "suspend_domain",
    "wait_for_state",
    "watch_domains",
]
