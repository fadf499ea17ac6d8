"""The wizard's page as a user sees it before filling it in: the install method it starts
with, the volumes it offers as an installer ISO, the OS variants and how it answers a choice
it does not offer."""

from __future__ import annotations

import json

import pytest
from lxml import html as lxml_html

from panel.actors import Actor
from panel.models import Job
from storage import services as storage_services
from storage.models import Volume
from tests.panel.conftest import alerts, page_text

pytestmark = [pytest.mark.libvirt]


def page(response):
    assert response.status_code == 200, response.content[:500]
    return lxml_html.fromstring(response.content.decode())


def test_the_wizard_starts_with_an_iso_install(admin_client, project):
    doc = page(admin_client.get("/vms/new/"))
    checked = doc.xpath("//input[@name='method'][@checked]")
    assert [radio.get("value") for radio in checked] == ["iso"]
    assert doc.xpath("//input[@name='method']")[0].get("value") == "iso"  # and first


@pytest.fixture
def media(admin_user, dir_pool):
    """An installer ISO, a disk image, a raw disk and a qcow2 image named like an ISO; and
    an ISO libvirt found in the pool (its format libvirt's "iso")."""
    made = {
        name: storage_services.create_volume(
            dir_pool, name=name, format=fmt, capacity_gib=0.01, actor=Actor(admin_user)
        )
        for name, fmt in (
            ("debian-12-netinst.iso", "raw"),
            ("disk.qcow2", "qcow2"),
            ("root.img", "raw"),
            ("trap.iso", "qcow2"),
        )
    }
    made["FOUND.ISO"] = Volume.objects.create(
        pool=dir_pool, name="FOUND.ISO", path=f"{dir_pool.target_path}/FOUND.ISO", format="iso"
    )
    return made


def options(doc, select: str) -> list[str]:
    return [o.text_content() for o in doc.xpath(f"//select[@name='{select}']/option")]


def test_the_iso_choice_offers_installer_isos_only(admin_client, dir_pool, project, media):
    doc = page(admin_client.get("/vms/new/"))
    assert options(doc, "iso_volume") == [
        f"{dir_pool.name}/FOUND.ISO",
        f"{dir_pool.name}/debian-12-netinst.iso",
    ]
    # A disk image is still there to boot as a disk.
    assert f"{dir_pool.name}/disk.qcow2" in options(doc, "import_volume")


def wizard_post(project, dir_pool, **fields):
    return {
        "name": "isovm",
        "project": project.pk,
        "os_variant": "generic",
        "vcpus": "1",
        "memory_mib": "128",
        "disk_pool": dir_pool.pk,
        "disk_size_gib": "0.05",
        "method": "iso",
        **fields,
    }


@pytest.mark.parametrize(
    ("volume", "says"),
    [
        ("disk.qcow2", "disk.qcow2 is a qcow2 disk image, not an installer ISO"),
        ("trap.iso", "trap.iso is a qcow2 disk image, not an installer ISO"),
        ("root.img", "root.img is not an installer ISO (its name does not end in .iso)"),
    ],
)
def test_the_wizard_refuses_a_disk_image_as_the_installer_iso(
    admin_client, host_facts, dir_pool, project, media, volume, says
):
    response = admin_client.post(
        "/vms/new/", wizard_post(project, dir_pool, iso_volume=media[volume].pk)
    )
    assert response.status_code == 400
    assert [a for a in alerts(response) if says in a], alerts(response)
    doc = lxml_html.fromstring(response.content.decode())
    assert doc.xpath("//div[@role='alert']/@data-error-field") == ["iso_volume"]
    assert not Job.objects.filter(kind="vm.create").exists()


def test_the_api_refuses_a_disk_image_as_the_installer_iso(
    admin_client, host_facts, dir_pool, project, media
):
    response = admin_client.post(
        "/api/v1/vms/",
        json.dumps(
            {
                "name": "isovm",
                "project": project.pk,
                "memory_mib": 128,
                "disks": [{"pool": dir_pool.pk, "size_gib": 0.05}],
                "install": {"method": "iso", "iso_volume": media["disk.qcow2"].pk},
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "not an installer ISO" in str(response.json()["iso_volume"])
    assert not Job.objects.filter(kind="vm.create").exists()


def test_the_wizard_queues_an_iso_install_from_an_iso(
    admin_client, host_facts, dir_pool, project, media
):
    iso = media["debian-12-netinst.iso"]
    response = admin_client.post("/vms/new/", wizard_post(project, dir_pool, iso_volume=iso.pk))
    assert response.status_code == 302, alerts(response)
    job = Job.objects.get(kind="vm.create")
    assert response.url == f"/jobs/{job.pk}/"
    assert job.result["install"] == {"method": "iso", "iso_path": iso.path}


def test_an_iso_template_needs_an_installer_iso(admin_client, dir_pool, project, media):
    fields = {
        "name": "netinst",
        "source": "iso",
        "os_variant": "generic",
        **dict.fromkeys(("vcpus", "max_vcpus"), "1"),
        **dict.fromkeys(("memory_mib", "max_memory_mib"), "512"),
        **dict.fromkeys(("disk_gib", "max_disk_gib"), "5"),
    }
    refused = admin_client.post("/vms/templates/", {**fields, "image": media["disk.qcow2"].pk})
    assert refused.status_code == 400
    assert "disk.qcow2 is a qcow2 disk image, not an installer ISO" in page_text(refused)
    iso = media["debian-12-netinst.iso"]
    assert admin_client.post("/vms/templates/", {**fields, "image": iso.pk}).status_code == 302


def test_the_os_variants_have_a_search_and_the_common_ones_first(admin_client, project):
    doc = page(admin_client.get("/vms/new/"))
    search = doc.xpath("//input[@type='search'][@aria-controls='os_variant']")
    assert [s.get("aria-label") for s in search] == ["Search OS variants"]
    common, every = doc.xpath("//select[@name='os_variant']/optgroup")
    assert (common.get("label"), every.get("label")) == ("Common", "All, by vendor")
    names = [o.text_content() for o in common.xpath("option")]
    assert names[0] == "Generic OS"
    assert {"Microsoft Windows 11 (win11)", "Microsoft Windows Server 2022 (win2k22)"} <= set(names)
    assert any(name.startswith("Ubuntu ") for name in names)
    assert any(name.startswith("Debian ") for name in names)
    assert doc.xpath("//select[@name='os_variant']//option[@selected]/@value") == ["generic"]
    assert len(every.xpath("option")) > 500  # the rest of osinfo-db, a search away


def test_the_wizard_refuses_an_os_variant_it_does_not_know(
    admin_client, host_facts, dir_pool, project, media
):
    iso = media["debian-12-netinst.iso"]
    response = admin_client.post(
        "/vms/new/", wizard_post(project, dir_pool, iso_volume=iso.pk, os_variant="ubunt")
    )
    assert response.status_code == 400
    assert [a for a in alerts(response) if "'ubunt' is not an OS variant osinfo-db knows" in a]
    assert "pick one from the list, or choose Generic OS" in alerts(response)[0]
    doc = lxml_html.fromstring(response.content.decode())
    assert doc.xpath("//div[@role='alert']/@data-error-field") == ["os_variant"]
    assert not Job.objects.filter(kind="vm.create").exists()


def test_the_wizard_records_the_os_variant_by_its_osinfo_name(
    admin_client, host_facts, dir_pool, project, media
):
    iso = media["debian-12-netinst.iso"]
    response = admin_client.post(
        "/vms/new/", wizard_post(project, dir_pool, iso_volume=iso.pk, os_variant="debianbullseye")
    )
    assert response.status_code == 302, alerts(response)
    assert Job.objects.get(kind="vm.create").result["os_variant"] == "debian11"
