"""Creating a VM, the request as sent: `CreateRequest.parse()` reads the API's JSON, the
wizard's or a template's easy form into frozen dataclasses.

Parsing checks what the request shows by itself: types, required fields, whole numbers,
lists, objects, names, paths and the install method's fields, each refusal a ServiceError
naming the field at fault. What needs the database, the actor's rights or the host is
checked by `checks` and `request`, on these objects; the checked VM is a `vmspec.VMSpec`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from panel.exceptions import ServiceError
from storage import services as storage_services

NAME_RE = re.compile(r"^(?!\.+\Z)[A-Za-z0-9_.-]{1,63}\Z")
DEFAULT_VCPUS = 1
DEFAULT_MEMORY_MIB = 1024
MAX_DISKS = 16
EMPTY_CLOUD_CONFIG = "#cloud-config\n{}\n"

Firmware = Literal["bios", "efi"]
FIRMWARE: dict[str, Firmware] = {"bios": "bios", "uefi": "efi", "efi": "efi"}


def field_error(message: str, field: str) -> ServiceError:
    """A refusal of the request that names the field at fault."""
    return ServiceError(message, field=field)


@dataclass(frozen=True)
class NewDisk:
    """A new volume in a pool. size_gib is None only from a template's easy form that gave
    the size as nothing (null, ""): refused once the VM gets the disk."""

    pool: int | None
    size_gib: float | None
    format: str = "qcow2"
    preallocation: str = "off"


@dataclass(frozen=True)
class ExistingDisk:
    """A volume the VM takes as a disk."""

    volume: int


DiskRequest = NewDisk | ExistingDisk


@dataclass(frozen=True)
class IsoInstall:
    """Boot an installer ISO (a volume, or an ISO of the image library) from a CD-ROM."""

    iso_volume: int | None
    library_image: int | None = None


@dataclass(frozen=True)
class UrlInstall:
    """Boot an install tree's kernel, with a kickstart injected into its initrd."""

    location: str
    extra_args: str = ""
    kickstart: str = ""


@dataclass(frozen=True)
class KernelInstall:
    """Boot a kernel and initrd on the host directly (initrd "": none)."""

    kernel: str
    initrd: str = ""
    cmdline: str = ""

    def __post_init__(self) -> None:
        # Clean however made: a path with ".." would pass the check of allowed roots.
        boot_path(self.kernel, "kernel")
        if self.initrd:
            boot_path(self.initrd, "initrd")


@dataclass(frozen=True)
class PxeInstall:
    """Boot from the network."""


@dataclass(frozen=True)
class ImportInstall:
    """Boot an existing volume as the VM's first disk."""

    volume: int | None


@dataclass(frozen=True)
class CloudInit:
    """The NoCloud seed's documents: a user made with a password and keys, or (user "")
    the user-data as given."""

    user: str = ""
    password: str = ""
    ssh_keys: tuple[str, ...] = ()
    user_data: str = EMPTY_CLOUD_CONFIG
    meta_data: str = ""
    network_config: str = ""

    @classmethod
    def parse(cls, config: dict[str, Any]) -> CloudInit:
        """The install's cloud_init object."""
        return cls(
            user=str(config["user"]) if config.get("user") else "",
            password=str(config.get("password") or ""),
            ssh_keys=_ssh_keys(config.get("ssh_keys")),
            user_data=str(config.get("user_data") or EMPTY_CLOUD_CONFIG),
            meta_data=str(config.get("meta_data") or ""),
            network_config=str(config.get("network_config") or ""),
        )


@dataclass(frozen=True)
class CloudImageInstall:
    """A disk made from a cloud image (a volume, or one of the image library: a linked
    overlay, or a full copy), set up by a cloud-init seed. hostname None: the VM's name."""

    image_volume: int | None
    cloud_init: CloudInit = CloudInit()
    linked: bool = True
    hostname: str | None = None
    library_image: int | None = None


InstallRequest = (
    IsoInstall | UrlInstall | KernelInstall | PxeInstall | ImportInstall | CloudImageInstall
)


@dataclass(frozen=True)
class EasyForm:
    """What a template's easy form asks beside the name, project, host, size and networks:
    the disk's size and pool and who logs in; the template says the rest (`from_template`).
    size_gib None: the template's size, unless blank_size (given as nothing, so no size)."""

    size_gib: float | None = None
    blank_size: bool = False
    pool: int | None = None
    login: CloudInit = CloudInit()

    def disk_gib(self, default: float) -> float | None:
        """The disk size asked for, default when none was; None when given as nothing."""
        if self.blank_size:
            return None
        return self.size_gib if self.size_gib is not None else default


@dataclass(frozen=True)
class CreateRequest:
    """A VM asked for, as sent. None means not given: host the one chosen, vcpus and
    memory_mib the defaults (or the template's); install None only in a template's easy
    form (easy), whose template says how to install."""

    name: str
    project: int
    host: int | None = None
    template: int | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    os_variant: str = ""
    firmware: Firmware = "bios"
    start: bool = True
    disks: tuple[DiskRequest, ...] = ()
    networks: tuple[int | None, ...] = ()
    install: InstallRequest | None = None
    easy: EasyForm | None = None
    affinity_group: int | None = None

    def __post_init__(self) -> None:
        # A valid VM name however made: it names the VM's volumes and its domain.
        _valid_name(self.name)

    @classmethod
    def parse(cls, data: object) -> CreateRequest:
        """The request in data: the full form, or a template's easy form when it names a
        template (then the fields the template gives are not read)."""
        if not isinstance(data, dict):
            raise ServiceError("Send the VM as an object of fields.")
        template = _object_id(data.get("template"), "template")
        project = _object_id(data.get("project"), "project")
        if project is None:
            raise field_error("Choose the project the VM belongs to.", "project")
        host = data.get("host")
        request = cls(
            name=_name(data.get("name")),
            project=project,
            # The easy form takes a blank host (0, false) as the template's.
            host=_object_id(host if template is None else host or None, "host"),
            template=template,
            vcpus=_whole_or_none(data, "vcpus", "vCPUs"),
            memory_mib=_whole_or_none(data, "memory_mib", "Memory in MiB"),
            affinity_group=_object_id(data.get("affinity_group") or None, "affinity_group"),
        )
        if template is not None:
            return request._easy_form(data)
        return dataclasses.replace(
            request,
            firmware=parse_firmware(data.get("firmware")),
            networks=_ids(data.get("networks"), "networks"),
            disks=_disks(data.get("disks")),
            install=_install(data.get("install")),
            os_variant=str(data.get("os_variant") or ""),
            start=bool(data.get("start", True)),
        )

    def _easy_form(self, data: dict[str, Any]) -> CreateRequest:
        """This request with the easy form's fields: a blank network list or pool stands
        for the template's."""
        size_gib, blank_size = _easy_size(data)
        return dataclasses.replace(
            self,
            networks=_ids(data.get("networks") or None, "networks"),
            easy=EasyForm(
                size_gib=size_gib,
                blank_size=blank_size,
                pool=_object_id(data.get("pool") or None, "disks"),
                login=_easy_login(data),
            ),
        )


def parse_firmware(value: Any) -> Firmware:
    """bios (the default) or efi; uefi is efi."""
    wanted = value or "bios"
    firmware = FIRMWARE.get(wanted if isinstance(wanted, str) else "")
    if firmware is None:
        raise field_error("Firmware is bios or uefi.", "firmware")
    return firmware


def _name(value: Any) -> str:
    """A VM name (spaces around it dropped)."""
    return _valid_name(str(value or "").strip())


def _valid_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise field_error(
            "The name must be 1 to 63 letters, digits, '-', '_' or '.' (not only dots), "
            "with no spaces, slashes or XML characters.",
            "name",
        )
    return name


def _object_id(value: Any, field: str) -> int | None:
    """An object id: a whole number, or None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise field_error(f"{field} must be an id (a whole number).", field)
    try:
        return int(value)
    except ValueError:
        raise field_error(f"{field} must be an id (a whole number).", field) from None


def _list(value: Any, field: str) -> list[Any]:
    """A list, empty when not given."""
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise field_error(f"{field} must be a list.", field)
    return value


def _ids(value: Any, field: str) -> tuple[int | None, ...]:
    """A list of object ids (an empty entry is None: refused as no such object)."""
    return tuple(_object_id(item, field) for item in _list(value, field))


def _whole_or_none(data: dict[str, Any], field: str, what: str) -> int | None:
    """The whole number data gives for field (what names it in the refusal); None when
    data has no such field. The host sets its range."""
    if field not in data:
        return None
    try:
        return int(data[field])
    except (TypeError, ValueError):
        raise field_error(f"{what} must be a whole number.", field) from None


def _ssh_keys(value: Any) -> tuple[str, ...]:
    """One key or a list of them; anything else is read as text, and refused as a key."""
    if not value:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | dict):
        return tuple(str(key) for key in value)
    return (str(value),)


def _disks(value: Any) -> tuple[DiskRequest, ...]:
    disks = _list(value, "disks")
    if len(disks) > MAX_DISKS:
        raise field_error(f"At most {MAX_DISKS} disks.", "disks")
    return tuple(_disk(i, disk) for i, disk in enumerate(disks))


def _disk(i: int, disk: Any) -> DiskRequest:
    """Disk i: {volume}, or {pool, size_gib, format, preallocation}."""
    if not isinstance(disk, dict):
        raise field_error("Each disk is an object: {pool, size_gib, format} or {volume}.", "disks")
    volume = _object_id(disk.get("volume"), "disks")
    if volume is not None:
        return ExistingDisk(volume)
    pool = _object_id(disk.get("pool"), "disks")
    fmt = str(disk.get("format") or "qcow2")
    if fmt not in storage_services.FORMATS:
        raise field_error(f"Disk {i + 1}: '{fmt}' is not a format qemu-img can create.", "disks")
    preallocation = str(disk.get("preallocation") or "off")
    if preallocation not in storage_services.PREALLOCATION:
        raise field_error(f"Disk {i + 1}: unknown preallocation '{preallocation}'.", "disks")
    # Refused here as any volume size is (not a number, not above 0, too big).
    storage_services.capacity_bytes(disk.get("size_gib"), "disks")
    return NewDisk(pool, float(disk["size_gib"]), fmt, preallocation)


def _easy_size(data: dict[str, Any]) -> tuple[float | None, bool]:
    """The easy form's disk size (size_gib, or disk_gib) and whether it was given as
    nothing (null, ""); (None, False) when not given."""
    if "size_gib" not in data and "disk_gib" not in data:
        return None, False
    value = data["size_gib"] if "size_gib" in data else data["disk_gib"]
    if not value:
        return (0.0, False) if isinstance(value, int | float) else (None, True)
    try:
        return float(value), False
    except (TypeError, ValueError):
        raise field_error("The disk size is a number of GiB.", "size_gib") from None


def _easy_login(data: dict[str, Any]) -> CloudInit:
    """Who logs in to a cloud image made from the easy form: a user with a password or SSH
    keys, else the user-data given."""
    keys = data.get("ssh_key") or data.get("ssh_keys")
    password = data.get("password")
    if keys or password:
        return CloudInit(
            user=str(data.get("user") or "cloud"),
            password=str(password or ""),
            ssh_keys=_ssh_keys(keys),
        )
    return CloudInit(user_data=str(data.get("user_data") or EMPTY_CLOUD_CONFIG))


def _install(value: Any) -> InstallRequest:
    fields = value or {}
    if not isinstance(fields, dict):
        raise field_error("install must be an object with a method.", "install")
    method = str(fields.get("method") or "")
    if method not in INSTALL_PARSERS:
        raise unknown_method(method)
    return INSTALL_PARSERS[method](fields)


def unknown_method(method: str) -> ServiceError:
    """The refusal of an install method there is none of."""
    return field_error(
        f"Unknown install method '{method}': use one of {', '.join(METHODS)}.", "install"
    )


def boot_path(value: Any, field: str) -> str:
    """A kernel or initrd: a clean absolute path on the host (`checks` says which are
    allowed)."""
    path = str(value or "").strip()
    if not path:
        raise field_error("Give the path on the host.", field)
    if "\x00" in path or not path.startswith("/") or os.path.normpath(path) != path:
        raise field_error(f"'{path[:80]}' is not a clean absolute path.", field)
    return path


def _cmdline(value: Any) -> str:
    text = str(value or "").strip()
    if len(text) > 2048 or any(c in text for c in "\n\r\x00"):
        raise field_error(
            "The kernel command line must be one line of at most 2048 characters.", "cmdline"
        )
    return text


def _kernel_install(fields: dict[str, Any]) -> KernelInstall:
    return KernelInstall(
        kernel=boot_path(fields.get("kernel"), "kernel"),
        initrd=boot_path(fields["initrd"], "initrd") if fields.get("initrd") else "",
        cmdline=_cmdline(fields.get("cmdline")),
    )


def _url_install(fields: dict[str, Any]) -> UrlInstall:
    return UrlInstall(
        location=str(fields.get("location") or "").strip(),
        extra_args=_cmdline(fields.get("extra_args")),
        kickstart=str(fields.get("kickstart") or ""),
    )


def _cloud_image_install(fields: dict[str, Any]) -> CloudImageInstall:
    image = _object_id(fields.get("image_volume"), "image_volume")
    config = fields.get("cloud_init") or {}
    if not isinstance(config, dict):
        raise field_error("cloud_init must be an object.", "cloud_init")
    return CloudImageInstall(
        image_volume=image,
        cloud_init=CloudInit.parse(config),
        linked=bool(fields.get("linked", True)),
        # Given, it stands for itself even when blank (then "vm").
        hostname=str(fields["hostname"] or "vm") if "hostname" in fields else None,
        library_image=_object_id(fields.get("library_image"), "library_image"),
    )


INSTALL_PARSERS: dict[str, Callable[[dict[str, Any]], InstallRequest]] = {
    "iso": lambda fields: IsoInstall(
        _object_id(fields.get("iso_volume"), "iso_volume"),
        _object_id(fields.get("library_image"), "library_image"),
    ),
    "url": _url_install,
    "kernel": _kernel_install,
    "pxe": lambda fields: PxeInstall(),
    "import": lambda fields: ImportInstall(_object_id(fields.get("volume"), "volume")),
    "cloud-image": _cloud_image_install,
}
METHODS = tuple(INSTALL_PARSERS)
