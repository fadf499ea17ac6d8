"""Operating systems a VM can be created for, with the resources their makers recommend.

Read from osinfo-db (the Debian package `osinfo-db`, the database behind
virt-install's `--os-variant`): one XML file per OS under
/usr/share/osinfo/os/<vendor>/. An OS that gives no resources of its own
takes them from the OS it derives from or upgrades, as libosinfo does.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lxml import etree

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "/usr/share/osinfo"
ARCHES = ("x86_64", "all")  # the panel runs x86_64 guests; "all" applies to every arch
MIB = 1024**2
GIB = 1024**3
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# Resource values looked up in <resources>, by our field name.
RESOURCE_PATHS = {
    "vcpus": "recommended/n-cpus",
    "memory": "recommended/ram",
    "disk": "recommended/storage",
    "minimum_vcpus": "minimum/n-cpus",
    "minimum_memory": "minimum/ram",
    "minimum_disk": "minimum/storage",
}
# The usual systems, each by the short id of its numbered releases (a prefix, then digits
# and dots, perhaps a service pack): the wizard offers the newest release of each first.
# linux: Generic Linux <year>; sle: SUSE Linux Enterprise 15 on; win: Windows; win2k:
# Windows Server.
COMMON = (
    "linux",
    "ubuntu",
    "debian",
    "fedora",
    "centos-stream",
    "rhel",
    "rocky",
    "almalinux",
    "opensuse",
    "sle",
    "alpinelinux",
    "archlinux",
    "freebsd",
    "win",
    "win2k",
)

RECENT = timedelta(days=4 * 365)


@dataclass(frozen=True)
class OsVariant:
    """One operating system release and what a VM for it should get by default."""

    short_id: str
    name: str
    vendor: str
    family: str
    distro: str
    version: str
    release_date: date | None
    eol_date: date | None
    recommended_vcpus: int
    recommended_memory_mib: int
    recommended_disk_gib: int
    minimum_memory_mib: int
    efi: bool  # the OS boots with UEFI firmware (it may boot with BIOS too)


GENERIC = OsVariant(
    short_id="generic",
    name="Generic OS",
    vendor="",
    family="",
    distro="",
    version="",
    release_date=None,
    eol_date=None,
    recommended_vcpus=1,
    recommended_memory_mib=1024,
    recommended_disk_gib=10,
    minimum_memory_mib=512,
    efi=False,
)
"""What a VM gets when its OS is unknown, or when osinfo-db is not installed
(then `variants()` is empty and every OS resolves to this)."""


def variants(root: str = DEFAULT_ROOT) -> list[OsVariant]:
    """Every OS in osinfo-db under `root`, sorted by vendor and name; empty when it is missing."""
    return sorted(_index(root)[0].values(), key=lambda v: (v.vendor.lower(), v.name.lower()))


def common(root: str = DEFAULT_ROOT, today: date | None = None) -> list[OsVariant]:
    """GENERIC, then the newest release of each system in COMMON that osinfo-db knows (only
    GENERIC when it is missing): the highest version among those out by today and not
    older than RECENT before the latest one (openSUSE Leap 15 follows 42)."""
    released = [
        v for v in variants(root) if (v.release_date or date.min) <= (today or date.today())
    ]
    picked = [GENERIC]
    for prefix in COMMON:
        numbered = re.compile(rf"{re.escape(prefix)}[0-9.]*(sp[0-9]+)?")
        releases = [v for v in released if numbered.fullmatch(v.short_id)]
        if releases:
            latest = max(v.release_date or date.min for v in releases)
            since = latest - RECENT if latest > date.min + RECENT else date.min
            recent = [v for v in releases if (v.release_date or latest) >= since]
            picked.append(max(recent, key=_newness))
    return picked


def _newness(os_variant: OsVariant) -> tuple[tuple[int, ...], date]:
    """How new a release is: its version's numbers, then its date."""
    numbers = tuple(int(n) for n in re.findall(r"[0-9]+", os_variant.version))
    return numbers, os_variant.release_date or date.min


def variant(short_id: str, root: str = DEFAULT_ROOT) -> OsVariant | None:
    """The OS with this short id (any of its aliases, e.g. debianbullseye), or None."""
    if short_id == GENERIC.short_id:
        return GENERIC
    by_id, aliases = _index(root)
    return by_id.get(aliases.get(short_id, ""))


def recommended(short_id: str, root: str = DEFAULT_ROOT) -> OsVariant:
    """The OS with this short id, or GENERIC when osinfo-db does not know it."""
    return variant(short_id, root) or GENERIC


@functools.lru_cache(maxsize=4)
def _index(root: str) -> tuple[dict[str, OsVariant], dict[str, str]]:
    """OS variants by osinfo id, and osinfo id by every short id; parsed once per root."""
    raw: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(root, "os").glob("**/*.xml")):
        try:
            document = etree.parse(str(path))
        except (OSError, etree.XMLSyntaxError) as exc:
            logger.warning("Skipping osinfo file %s: %s", path, exc)
            continue
        for os_element in document.getroot().iterfind("os"):
            entry = _read_os(os_element)
            raw[entry["id"]] = entry
    # An OS without a short id cannot be chosen, but may still pass on resources.
    by_id = {os_id: _variant(os_id, raw) for os_id, entry in raw.items() if entry["short_ids"]}
    aliases = {short_id: os_id for os_id, entry in raw.items() for short_id in entry["short_ids"]}
    return by_id, aliases


def _read_os(element: etree._Element) -> dict[str, Any]:
    """The fields of one <os> element, with resources and firmware left unresolved."""
    values: dict[str, Any] = {}
    for arch in ARCHES:
        for resources in element.iterfind(f"resources[@arch='{arch}']"):
            for field, xpath in RESOURCE_PATHS.items():
                found = resources.findtext(xpath)
                if found and found.strip().isdigit() and field not in values:
                    values[field] = int(found)
    for firmware in element.iterfind("firmware"):
        if firmware.get("type") == "efi" and firmware.get("arch", "all") in ARCHES:
            values.setdefault("efi", firmware.get("supported", "true") != "false")
    return {
        "id": element.get("id", ""),
        "short_ids": [s.text.strip() for s in element.iterfind("short-id") if s.text],
        "name": _text(element, "name"),
        "vendor": _text(element, "vendor"),
        "family": _text(element, "family"),
        "distro": _text(element, "distro"),
        "version": _text(element, "version"),
        "release_date": _date(_text(element, "release-date")),
        "eol_date": _date(_text(element, "eol-date")),
        "parents": [
            parent.get("id")
            for tag in ("derives-from", "upgrades")
            for parent in element.iterfind(tag)
            if parent.get("id")
        ],
        "values": values,
    }


def _variant(os_id: str, raw: dict[str, dict[str, Any]]) -> OsVariant:
    """Build the variant for `os_id`, taking each missing resource from its ancestors."""
    entry = raw[os_id]

    def value(field: str, default: Any) -> Any:
        found = _inherited(os_id, field, raw, set())
        return default if found is None else found

    # A recommendation below the minimum (e.g. inherited from an older
    # release) is raised to the minimum.
    vcpus = max(value("vcpus", GENERIC.recommended_vcpus), value("minimum_vcpus", 1))
    minimum_memory = value("minimum_memory", GENERIC.minimum_memory_mib * MIB)
    memory = max(value("memory", GENERIC.recommended_memory_mib * MIB), minimum_memory)
    disk = max(value("disk", GENERIC.recommended_disk_gib * GIB), value("minimum_disk", 0))
    return OsVariant(
        short_id=entry["short_ids"][0],
        name=entry["name"] or entry["short_ids"][0],
        vendor=entry["vendor"],
        family=entry["family"],
        distro=entry["distro"],
        version=entry["version"],
        release_date=entry["release_date"],
        eol_date=entry["eol_date"],
        recommended_vcpus=vcpus,
        recommended_memory_mib=-(-memory // MIB),
        recommended_disk_gib=-(-disk // GIB),
        minimum_memory_mib=-(-minimum_memory // MIB),
        efi=value("efi", False),
    )


def _inherited(os_id: str, field: str, raw: dict[str, dict[str, Any]], seen: set[str]) -> Any:
    """`field` of the OS, else of the first parent (derives-from, then upgrades) that has it."""
    entry = raw.get(os_id)
    if entry is None or os_id in seen:
        return None
    seen.add(os_id)
    if field in entry["values"]:
        return entry["values"][field]
    for parent in entry["parents"]:
        found = _inherited(parent, field, raw, seen)
        if found is not None:
            return found
    return None


def _text(element: etree._Element, tag: str) -> str:
    """The text of the first `tag` child that is not a translation."""
    for child in element.iterfind(tag):
        if child.get(XML_LANG) is None:
            return (child.text or "").strip()
    return ""


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None
