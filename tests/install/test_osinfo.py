"""OS variants from osinfo-db: the defaults a new VM gets for the OS it will run."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from vms.install import osinfo

OSINFO_DB = Path(osinfo.DEFAULT_ROOT, "os")

BASE_OS = """<?xml version="1.0"?>
<libosinfo version="0.0.1">
  <os id="http://example.org/exampleos/1">
    <short-id>exampleos1</short-id>
    <short-id>examplelion</short-id>
    <name>Example OS 1</name>
    <name xml:lang="de">Beispiel-OS 1</name>
    <vendor>Example Project</vendor>
    <family>linux</family>
    <distro>exampleos</distro>
    <version>1</version>
    <release-date>2021-08-14</release-date>
    <eol-date>2026-06-30</eol-date>
    <firmware arch="x86_64" type="efi"/>
    <resources arch="aarch64">
      <recommended><n-cpus>8</n-cpus><ram>17179869184</ram></recommended>
    </resources>
    <resources arch="x86_64">
      <minimum><n-cpus>1</n-cpus><ram>1073741824</ram><storage>10737418240</storage></minimum>
      <recommended><n-cpus>2</n-cpus><ram>2147483648</ram><storage>21474836480</storage></recommended>
    </resources>
  </os>
</libosinfo>
"""
DERIVED_OS = """<?xml version="1.0"?>
<libosinfo version="0.0.1">
  <os id="http://example.org/exampleos/2">
    <short-id>exampleos2</short-id>
    <name>Example OS 2</name>
    <vendor>Example Project</vendor>
    <family>linux</family>
    <distro>exampleos</distro>
    <version>2</version>
    <upgrades id="http://example.org/exampleos/1"/>
    <derives-from id="http://example.org/exampleos/1"/>
    <resources arch="all" inherit="true"/>
  </os>
</libosinfo>
"""
OTHER_OS = """<?xml version="1.0"?>
<libosinfo version="0.0.1">
  <os id="http://another.org/anotheros/5">
    <short-id>anotheros5</short-id>
    <name>Another OS 5</name>
    <vendor>Another Vendor</vendor>
    <derives-from id="http://example.org/exampleos/2"/>
    <resources arch="all">
      <recommended><ram>4294967296</ram><storage>1073741824</storage></recommended>
    </resources>
    <resources arch="x86_64">
      <recommended><storage>32212254720</storage></recommended>
    </resources>
  </os>
</libosinfo>
"""


@pytest.fixture
def db(tmp_path) -> str:
    for relative, text in (
        ("os/example.org/exampleos-1.xml", BASE_OS),
        ("os/example.org/exampleos-2.xml", DERIVED_OS),
        ("os/another.org/anotheros-5.xml", OTHER_OS),
        ("os/broken.org/broken.xml", "<libosinfo><os"),
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    return str(tmp_path)


def test_it_reads_an_os_with_its_x86_64_resources(db):
    assert osinfo.variant("exampleos1", db) == osinfo.OsVariant(
        short_id="exampleos1",
        name="Example OS 1",
        vendor="Example Project",
        family="linux",
        distro="exampleos",
        version="1",
        release_date=date(2021, 8, 14),
        eol_date=date(2026, 6, 30),
        recommended_vcpus=2,
        recommended_memory_mib=2048,
        recommended_disk_gib=20,
        minimum_memory_mib=1024,
        efi=True,
    )


def test_it_finds_an_os_by_any_of_its_short_ids(db):
    assert osinfo.variant("examplelion", db).short_id == "exampleos1"


def test_it_inherits_resources_from_the_os_it_derives_from(db):
    derived = osinfo.variant("exampleos2", db)
    assert (derived.recommended_vcpus, derived.recommended_memory_mib) == (2, 2048)
    assert (derived.recommended_disk_gib, derived.minimum_memory_mib) == (20, 1024)
    assert derived.efi is True


def test_it_inherits_only_the_resources_an_os_leaves_out(db):
    other = osinfo.variant("anotheros5", db)
    assert other.recommended_memory_mib == 4096
    assert other.recommended_disk_gib == 30  # x86_64 before "all"
    assert other.recommended_vcpus == 2  # inherited through exampleos2 from exampleos1


def test_it_lists_variants_by_vendor_and_name_skipping_broken_files(db):
    assert [v.short_id for v in osinfo.variants(db)] == ["anotheros5", "exampleos1", "exampleos2"]


def test_it_falls_back_to_generic_for_an_unknown_os(db):
    assert osinfo.variant("nosuchos", db) is None
    generic = osinfo.recommended("nosuchos", db)
    assert generic is osinfo.GENERIC
    assert (generic.recommended_vcpus, generic.recommended_memory_mib) == (1, 1024)
    assert generic.recommended_disk_gib == 10


def test_it_gives_generic_for_everything_without_osinfo_db(tmp_path):
    assert osinfo.variants(str(tmp_path / "missing")) == []
    assert osinfo.recommended("rhel9.0", str(tmp_path / "missing")) is osinfo.GENERIC


def need_osinfo_db() -> None:
    if not OSINFO_DB.is_dir():
        pytest.fail(
            f"{OSINFO_DB} is missing: apt-get install osinfo-db (scripts/install.sh installs it)",
            pytrace=False,
        )


def test_it_recommends_resources_for_a_real_os():
    need_osinfo_db()
    known = [v.short_id for v in osinfo.variants()]
    short_id = next(s for s in ("debian12", "rhel9.0", "debian11") if s in known)
    os_variant = osinfo.recommended(short_id)
    assert os_variant.short_id == short_id
    assert os_variant.recommended_vcpus > 0
    assert os_variant.recommended_memory_mib >= 1024
    assert os_variant.recommended_disk_gib >= 10
    assert os_variant.release_date is not None


def test_it_raises_a_recommendation_to_the_os_minimum():
    need_osinfo_db()
    windows = osinfo.variant("win11")
    assert windows is not None
    assert windows.recommended_vcpus >= 2  # Windows 11 needs two CPUs and 64 GiB
    assert windows.recommended_disk_gib >= 64


def release(short_id: str, version: str, released: str = "") -> str:
    dated = f"<release-date>{released}</release-date>" if released else ""
    return (
        f'<os id="http://example.org/{short_id}"><short-id>{short_id}</short-id>'
        f"<name>{short_id}</name><version>{version}</version>{dated}</os>"
    )


def test_the_common_choices_are_generic_and_the_newest_release_of_each_usual_system(tmp_path):
    releases = [
        release("opensuse42.3", "42.3", "2017-07-26"),  # Leap's old numbering
        release("opensuse15.4", "15.4", "2022-06-08"),
        release("opensuse15.9", "15.9", "2099-01-01"),  # not out yet
        release("opensuse-unknown", "99"),
        release("ubuntu22.04", "22.04", "2022-04-21"),
        release("ubuntu24.04", "24.04"),  # not dated: counts as out
        release("win95", "4.0", "1995-08-24"),
        release("win11", "11.0", "2021-10-05"),
        release("win2k19", "10.0", "2018-11-13"),
        release("win2k22", "10.0", "2021-08-18"),
        release("sle15sp4", "15.4", "2022-06-21"),
    ]
    (tmp_path / "os").mkdir()
    (tmp_path / "os" / "releases.xml").write_text(f"<libosinfo>{''.join(releases)}</libosinfo>")
    common = [v.short_id for v in osinfo.common(str(tmp_path), today=date(2024, 1, 1))]
    assert common == ["generic", "ubuntu24.04", "opensuse15.4", "sle15sp4", "win11", "win2k22"]
    assert [v.short_id for v in osinfo.common(str(tmp_path / "missing"))] == ["generic"]
