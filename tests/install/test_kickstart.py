"""Kickstart files: checked line by line, and injected into an installer's initrd."""

from __future__ import annotations

import gzip
import lzma
import subprocess
from pathlib import Path

import pytest

from panel.exceptions import ServiceError
from tests.conftest import require
from vms.install import kickstart

RHEL_KICKSTART = """\
# RHEL 9 minimal server
text
lang en_US.UTF-8
keyboard --vckeymap=us --xlayouts='us'
timezone Europe/Berlin --utc
network --bootproto=dhcp --device=link --activate --hostname=web1
rootpw --plaintext s3cret-Pass
user --name=alice --groups=wheel --password=s3cret-Pass --plaintext
sshkey --username=alice "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICxioU5wFs9IB81itCZLlEGzercWnZK alice"
selinux --enforcing
firewall --enabled --service=ssh
bootloader --location=mbr --append="console=ttyS0"
zerombr
clearpart --all --initlabel
autopart --type=lvm
services --enabled=sshd,chronyd

%packages --ignoremissing
@^minimal-environment
openssh-server
-iwl*firmware
%end

%post --log=/root/ks-post.log
echo "installed by kickstart" > /etc/motd
%end

reboot
"""
KS_CFG = RHEL_KICKSTART.encode()


@pytest.fixture
def small_initrd() -> tuple[bytes, dict[str, bytes]]:
    files = {"init": b"#!/bin/sh\nexec /bin/sh\n", "etc-release": b"tiny 1.0\n"}
    return gzip.compress(kickstart.newc_archive(files, mode=0o755)), files


def test_it_accepts_a_realistic_rhel_kickstart():
    kickstart.validate_kickstart(RHEL_KICKSTART)


def test_it_names_the_line_of_an_unclosed_packages_section():
    text = "text\nlang en_US.UTF-8\nautopart\n%packages\n@core\n%post\necho hi\n%end\n"
    with pytest.raises(ServiceError) as exc:
        kickstart.validate_kickstart(text)
    assert exc.value.message.startswith('kickstart line 4: "%packages" is not closed by %end.')
    assert exc.value.field == "kickstart"


def test_it_names_a_section_left_open_at_the_end():
    with pytest.raises(ServiceError, match='line 2: "%post" is not closed by %end'):
        kickstart.validate_kickstart("text\n%post\necho done\n")


def test_it_names_the_line_of_an_unknown_command():
    text = "text\nlang en_US.UTF-8\n\n# disks\nclearpart --all\nautoprat --type=lvm\n"
    with pytest.raises(ServiceError) as exc:
        kickstart.validate_kickstart(text)
    assert exc.value.message.startswith('kickstart line 6: "autoprat" is not a kickstart command.')


def test_it_refuses_an_unknown_section_and_a_stray_end():
    with pytest.raises(ServiceError, match='line 2: "%postinstall" is not a kickstart section'):
        kickstart.validate_kickstart("text\n%postinstall\n%end\n")
    with pytest.raises(ServiceError, match="line 3: %end has no section to close"):
        kickstart.validate_kickstart("text\nreboot\n%end\n")


def test_it_points_anaconda_at_the_injected_file():
    assert kickstart.kickstart_cmdline() == "inst.ks=file:/ks.cfg"


def test_it_injects_the_kickstart_after_the_original_initrd(small_initrd):
    initrd, files = small_initrd
    injected = kickstart.inject_into_initrd(initrd, {"ks.cfg": KS_CFG})
    assert injected.startswith(initrd)
    assert kickstart.list_initrd_files(injected) == files | {"ks.cfg": KS_CFG}


def test_it_lets_a_later_archive_replace_a_file(small_initrd):
    initrd, _ = small_initrd
    injected = kickstart.inject_into_initrd(initrd, {"init": b"#!/bin/sh\necho new\n"})
    assert kickstart.list_initrd_files(injected)["init"] == b"#!/bin/sh\necho new\n"


def test_it_reads_plain_and_xz_archives_in_one_initrd():
    # Like Fedora's: an uncompressed microcode archive, then the compressed main one.
    early = kickstart.newc_archive({"kernel/x86/microcode/GenuineIntel.bin": b"\x01\x02"})
    main = lzma.compress(kickstart.newc_archive({"init": b"#!/bin/sh\n"}), format=lzma.FORMAT_XZ)
    files = kickstart.list_initrd_files(
        kickstart.inject_into_initrd(early + main, {"ks.cfg": KS_CFG})
    )
    assert files == {
        "kernel/x86/microcode/GenuineIntel.bin": b"\x01\x02",
        "init": b"#!/bin/sh\n",
        "ks.cfg": KS_CFG,
    }


def test_it_writes_archives_gnu_cpio_extracts(tmp_path):
    cpio = require("cpio", "cpio")
    archive = kickstart.newc_archive({"ks.cfg": KS_CFG, "odd-size": b"12345"})
    subprocess.run([cpio, "-id", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "ks.cfg").read_bytes() == KS_CFG
    assert (tmp_path / "odd-size").read_bytes() == b"12345"
    assert (tmp_path / "ks.cfg").stat().st_mode & 0o777 == 0o644


@pytest.mark.libvirt
def test_it_injects_into_the_tiny_guest_initrd(panel_test_guest):
    initrd = Path(panel_test_guest.initrd).read_bytes()
    original = kickstart.list_initrd_files(initrd)
    assert "init" in original
    injected = kickstart.inject_into_initrd(initrd, {"ks.cfg": KS_CFG})
    assert injected.startswith(initrd)
    assert kickstart.list_initrd_files(injected) == original | {"ks.cfg": KS_CFG}


def test_it_refuses_a_damaged_initrd(small_initrd):
    initrd, _ = small_initrd
    with pytest.raises(ServiceError, match="damaged compressed archive at byte 0") as exc:
        kickstart.list_initrd_files(initrd[: len(initrd) // 2])
    assert exc.value.field == "initrd"


def test_it_refuses_file_names_outside_the_root():
    with pytest.raises(ValueError):
        kickstart.inject_into_initrd(b"", {"etc/ks.cfg": KS_CFG})


@pytest.mark.libvirt
def test_it_boots_a_kernel_that_sees_the_injected_kickstart(panel_test_guest, tmp_path):
    qemu = require("qemu-system-x86_64", "qemu-system-x86")
    # A later archive replaces the guest's /init with one that prints /ks.cfg
    # and powers off: the kernel itself unpacks what was appended.
    init = (
        b"#!/bin/busybox sh\n/bin/busybox echo KS-BEGIN\n/bin/busybox cat /ks.cfg\n"
        b"/bin/busybox echo KS-END\n/bin/busybox poweroff -f\n"
    )
    initrd = Path(panel_test_guest.initrd).read_bytes() + gzip.compress(
        kickstart.newc_archive({"init": init}, 0o755)
    )
    (tmp_path / "initrd.img").write_bytes(kickstart.inject_into_initrd(initrd, {"ks.cfg": KS_CFG}))
    boot = subprocess.run(
        [
            qemu,
            *("-machine", "accel=tcg", "-m", "256", "-nographic", "-no-reboot", "-net", "none"),
            *("-kernel", panel_test_guest.kernel),
            *("-initrd", str(tmp_path / "initrd.img")),
            *("-append", "console=ttyS0 panic=-1 quiet"),
        ],
        capture_output=True,
        timeout=120,
    )
    console = boot.stdout.replace(b"\r\n", b"\n")
    assert b"KS-BEGIN\n" + KS_CFG + b"KS-END" in console
