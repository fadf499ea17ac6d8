"""Kickstart files checked and injected into an installer's initrd.

Like `virt-install --initrd-inject`: the kickstart travels inside the initrd
as an extra cpio archive appended to it, and the kernel command line points
Anaconda at it with `inst.ks=file:/ks.cfg`. The Linux kernel unpacks every
archive of a concatenated initrd, compressed or not, later files replacing
earlier ones, so the original initrd is left exactly as it was.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import stat
import zlib
from typing import Any

from panel.exceptions import ServiceError

# Sections that hold a body and must be closed by %end.
SECTIONS = frozenset(
    {"%packages", "%pre", "%pre-install", "%post", "%onerror", "%traceback", "%addon", "%anaconda"}
)
# Directives that stand on their own line, in or out of sections.
DIRECTIVES = frozenset({"%include", "%ksappend"})
# Commands pykickstart knows for current Fedora and RHEL releases.
COMMANDS = frozenset(
    """
    auth authconfig authselect autopart autostep bootloader btrfs cdrom clearpart cmdline
    device deviceprobe dmraid driverdisk eula fcoe firewall firstboot graphical group halt
    harddrive hmc ignoredisk install interactive iscsi iscsiname keyboard lang langsupport
    liveimg logging logvol mediacheck method module monitor mount mouse multipath network
    nfs nvdimm ostreecontainer ostreesetup part partition poweroff raid realm reboot repo
    reqpart rescue rhsm rootpw selinux services shutdown skipx snapshot sshkey sshpw
    syspurpose text timesource timezone updates upgrade url user vnc volgroup xconfig
    zerombr zfcp zipl
    """.split()
)

NEWC_MAGIC = b"070701"
NEWC_CRC_MAGIC = b"070702"
TRAILER = "TRAILER!!!"


def validate_kickstart(text: str) -> None:
    """Refuse a kickstart with unknown commands or sections not closed by %end, naming the line."""
    open_section: tuple[str, int] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word = line.split()[0]
        if word in SECTIONS:
            if open_section is not None:
                _refuse_unclosed(*open_section)
            open_section = (word, number)
        elif word == "%end":
            if open_section is None:
                raise ServiceError(
                    f"kickstart line {number}: %end has no section to close. "
                    "Remove it, or start the section (e.g. %packages) above it.",
                    field="kickstart",
                )
            open_section = None
        elif open_section is not None or word in DIRECTIVES:
            continue  # package names and script lines are free-form
        elif word.startswith("%"):
            raise ServiceError(
                f'kickstart line {number}: "{word}" is not a kickstart section. '
                f"Use one of {', '.join(sorted(SECTIONS | DIRECTIVES))}.",
                field="kickstart",
            )
        elif word not in COMMANDS:
            raise ServiceError(
                f'kickstart line {number}: "{word}" is not a kickstart command. '
                "Check its spelling; shell commands belong in a %post section.",
                field="kickstart",
            )
    if open_section is not None:
        _refuse_unclosed(*open_section)


def _refuse_unclosed(section: str, number: int) -> None:
    raise ServiceError(
        f'kickstart line {number}: "{section}" is not closed by %end. '
        "Add a line %end where the section ends.",
        field="kickstart",
    )


def kickstart_cmdline(filename: str = "ks.cfg") -> str:
    """The kernel argument that makes Anaconda read the injected kickstart."""
    return f"inst.ks=file:/{filename}"


def inject_into_initrd(initrd: bytes, files: dict[str, bytes]) -> bytes:
    """The initrd followed by a gzip'd cpio archive holding `files` at its root (mode 0644)."""
    for name in files:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"initrd files go at the root: {name!r} is not a plain file name")
    archive = newc_archive(files)
    # Zero padding to a 4-byte boundary is skipped by the kernel between archives.
    padding = b"\0" * (-len(initrd) % 4)
    return initrd + padding + gzip.compress(archive, mtime=0)


def newc_archive(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """An uncompressed cpio archive in the kernel's "newc" format, with its trailer."""
    parts = []
    for inode, (name, data) in enumerate(files.items(), start=1):
        parts.append(_newc_entry(name, data, stat.S_IFREG | mode, inode))
    parts.append(_newc_entry(TRAILER, b"", 0, 0))
    return b"".join(parts)


def _newc_entry(name: str, data: bytes, mode: int, inode: int) -> bytes:
    encoded = name.encode() + b"\0"
    nlink = 1
    fields = (inode, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = NEWC_MAGIC + b"".join(b"%08X" % value for value in fields)
    entry = header + encoded
    entry += b"\0" * (-len(entry) % 4)
    return entry + data + b"\0" * (-len(data) % 4)


def list_initrd_files(initrd: bytes) -> dict[str, bytes]:
    """The regular files of every archive in an initrd (plain, gzip, xz, bzip2), later ones winning."""
    files: dict[str, bytes] = {}
    offset = 0
    while offset < len(initrd):
        if initrd[offset] == 0:
            offset += 1
        elif initrd.startswith((NEWC_MAGIC, NEWC_CRC_MAGIC), offset):
            offset = _read_newc(initrd, offset, files)
        else:
            data, offset = _decompress_member(initrd, offset)
            files.update(list_initrd_files(data))
    return files


def _read_newc(buf: bytes, offset: int, files: dict[str, bytes]) -> int:
    """Add the regular files of the archive at `offset` to `files`; return where it ends."""
    start = offset
    while True:
        header = buf[offset : offset + 110]
        if len(header) < 110 or header[:6] not in (NEWC_MAGIC, NEWC_CRC_MAGIC):
            raise ServiceError(
                f"The initrd has a damaged cpio archive at byte {offset}. "
                "Use the initrd exactly as the distribution ships it.",
                field="initrd",
            )
        mode = int(header[14:22], 16)
        size = int(header[54:62], 16)
        name_size = int(header[94:102], 16)
        name_end = offset + 110 + name_size
        name = buf[offset + 110 : name_end - 1].decode("utf-8", "replace")
        data_start = name_end + (-(name_end - start) % 4)
        data_end = data_start + size
        offset = data_end + (-(data_end - start) % 4)
        if name == TRAILER:
            return offset
        if stat.S_ISREG(mode):
            files[name.removeprefix("./")] = buf[data_start:data_end]


def _decompress_member(buf: bytes, offset: int) -> tuple[bytes, int]:
    """Decompress the one compressed stream at `offset`; return its data and where it ends."""
    head = buf[offset : offset + 6]
    decompressor: Any
    if head.startswith(b"\x1f\x8b"):
        decompressor = zlib.decompressobj(wbits=31)
    elif head.startswith(b"\xfd7zXZ\x00"):
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    elif head.startswith(b"BZh"):
        decompressor = bz2.BZ2Decompressor()
    else:
        kind = "zstd" if head.startswith(b"\x28\xb5\x2f\xfd") else "an unknown format"
        raise ServiceError(
            f"The initrd has data in {kind} at byte {offset}, which the panel cannot read. "
            "Use an initrd compressed with gzip, xz or bzip2, or not compressed.",
            field="initrd",
        )
    try:
        data = decompressor.decompress(buf[offset:])
    except (zlib.error, lzma.LZMAError, OSError) as exc:
        raise _damaged(offset, str(exc)) from exc
    if not decompressor.eof:
        raise _damaged(offset, "it ends in the middle")
    return data, len(buf) - len(decompressor.unused_data)


def _damaged(offset: int, problem: str) -> ServiceError:
    return ServiceError(
        f"The initrd has a damaged compressed archive at byte {offset} ({problem}). "
        "Download the initrd again.",
        field="initrd",
    )
