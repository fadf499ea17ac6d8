"""The storage pages and the VM page's disk forms, as a user sees them; the browser upload."""

from __future__ import annotations

import hashlib
import os
import re

import pytest
from lxml import html as lxml_html
from playwright.sync_api import expect

from panel import services as panel_services
from panel.actors import Actor
from storage import services
from storage.models import StoragePool, Volume
from tests.conftest import ADMIN_PASSWORD
from tests.panel.conftest import page_text
from tests.storage.conftest import MIB, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def test_the_pool_list_shows_space_bars(dir_pool, admin_client):
    text = page_text(admin_client.get("/storage/"))
    assert dir_pool.name in text
    assert "used" in text and "free" in text and "total" in text
    html = admin_client.get("/storage/").content.decode()
    assert 'role="progressbar"' in html


def test_an_admin_adds_a_dir_pool_from_the_form(local_host, pool_dir, admin_client):
    response = admin_client.post(
        "/storage/add/",
        {
            "host": local_host.pk,
            "name": pool_dir.name,
            "type": "dir",
            "target_path": str(pool_dir),
            "persistent": "1",
            "build": "1",
            "start": "1",
        },
    )
    pool = StoragePool.objects.get(name=pool_dir.name)
    try:
        assert response.status_code == 302
        assert response.url == f"/storage/{pool.pk}/"
        assert pool.state == "active"
        assert pool_dir.is_dir()
        page = page_text(admin_client.get(response.url))
        assert f"dir pool on local · {pool_dir}" in page
    finally:
        virsh("pool-destroy", pool.name)
        virsh("pool-undefine", pool.name)


def test_the_pool_form_says_what_is_wrong_and_creates_nothing(local_host, admin_client):
    response = admin_client.post(
        "/storage/add/",
        {
            "host": local_host.pk,
            "name": "escape",
            "type": "dir",
            "target_path": "/etc/x",
            "build": "1",
        },
    )
    assert response.status_code == 400
    assert "outside the directories allowed for storage" in page_text(response)
    assert not StoragePool.objects.filter(name="escape").exists()
    assert not os.path.exists("/etc/x")


def test_members_do_not_get_the_pool_form(plain_user, client):
    client.force_login(plain_user)
    assert client.get("/storage/add/").status_code == 403


def test_volumes_are_created_and_shown_with_qemu_imgs_view(dir_pool, admin_client):
    response = admin_client.post(
        f"/storage/{dir_pool.pk}/volumes/add/",
        {
            "name": "web.qcow2",
            "format": "qcow2",
            "capacity_gib": "0.25",
            "preallocation": "metadata",
        },
    )
    volume = Volume.objects.get(pool=dir_pool, name="web.qcow2")
    assert response.url == f"/storage/volumes/{volume.pk}/"
    text = page_text(admin_client.get(response.url))
    assert "Formatqcow2" in text  # <dt>Format</dt><dd>qcow2</dd>
    assert "Virtual size256.0 MiB" in text
    assert f"{volume.path} qcow2, 256.0 MiB virtual" in text

    response = admin_client.post(f"/storage/volumes/{volume.pk}/check/", follow=True)
    assert "No errors were found on the image." in page_text(response)

    response = admin_client.post(
        f"/storage/volumes/{volume.pk}/resize/", {"capacity_gib": "0.1"}, follow=True
    )
    assert "cannot shrink" in page_text(response)


def _act(client, path: str, data: dict | None = None) -> tuple[str, list[str]]:
    """POST to a page action: where it sends the user and what it says there."""
    from django.contrib.messages import get_messages

    response = client.post(path, data or {})
    said = [str(m) for m in get_messages(response.wsgi_request)]
    client.get(response.url)  # the page shows the messages, and they are gone
    return response.url, said


def pool_buttons(client, pool) -> dict[str, bool]:
    """{label: enabled} of the pool page's Build, Start, Stop and Refresh buttons."""
    page = lxml_html.fromstring(client.get(f"/storage/{pool.pk}/").content)
    return {
        label: page.xpath(f"//button[normalize-space()='{label}']")[0].get("disabled") is None
        for label in ("Build", "Start", "Stop", "Refresh")
    }


def test_the_pool_page_offers_only_what_its_state_allows(dir_pool, admin_user, admin_client):
    assert pool_buttons(admin_client, dir_pool) == {
        "Build": False,
        "Start": False,
        "Stop": True,
        "Refresh": True,
    }
    services.pool_action(dir_pool, "stop", actor=Actor(admin_user))
    stopped = StoragePool.objects.get(pk=dir_pool.pk)
    assert stopped.state != "active"
    assert pool_buttons(admin_client, stopped) == {
        "Build": True,
        "Start": True,
        "Stop": False,
        "Refresh": False,
    }
    services.pool_action(stopped, "start", actor=Actor(admin_user))


def test_the_volume_and_pool_pages_answer_each_action(dir_pool, admin_user, admin_client):
    made = {
        name: services.create_volume(
            dir_pool, name=name, capacity_gib=0.01, actor=Actor(admin_user)
        )
        for name in ("base.qcow2", "scratch.qcow2", "old.qcow2")
    }
    base, scratch, old = made.values()
    page = f"/storage/volumes/{base.pk}/"

    assert _act(admin_client, f"{page}info/") == (page, [])
    assert _act(admin_client, f"{page}share/", {"shared": "1"}) == (
        page,
        ["base.qcow2: share done."],
    )
    assert Volume.objects.get(pk=base.pk).shared
    assert admin_client.post(f"{page}bogus/").status_code == 404  # no such form
    url, said = _act(admin_client, f"{page}clone/", {"name": "copy.qcow2", "pool": dir_pool.pk})
    assert re.fullmatch(r"/jobs/\d+/", url) and said == []

    url, said = _act(admin_client, f"/storage/volumes/{scratch.pk}/wipe/")
    assert re.fullmatch(r"/jobs/\d+/", url) and said == []
    url, said = _act(admin_client, f"/storage/volumes/{scratch.pk}/delete/")
    assert url == f"/storage/volumes/{scratch.pk}/" and len(said) == 1
    assert "scratch.qcow2" in said[0] and Volume.objects.filter(pk=scratch.pk).exists()
    assert _act(admin_client, f"/storage/volumes/{old.pk}/delete/") == (
        f"/storage/{dir_pool.pk}/",
        ["Volume old.qcow2 deleted."],
    )

    pool_page = f"/storage/{dir_pool.pk}/"
    name = dir_pool.name
    assert _act(admin_client, f"{pool_page}refresh/") == (
        pool_page,
        [f"Pool {name}: refresh done."],
    )
    assert _act(admin_client, f"{pool_page}autostart/", {"enabled": "1"}) == (
        pool_page,
        [f"Pool {name}: autostart done."],
    )
    assert StoragePool.objects.get(pk=dir_pool.pk).autostart
    assert admin_client.post(f"{pool_page}bogus/").status_code == 404
    assert _act(admin_client, f"{pool_page}delete/") == ("/storage/", [f"Pool {name} deleted."])


def test_the_vm_page_attaches_and_detaches_a_disk(
    dir_pool, local_host, panel_test_guest, admin_user, admin_client
):
    from panel import hypervisor
    from tests.conftest import LOCAL_URI, guest_spec
    from vms import services as vm_services

    project = panel_services.create_project(name="alpha", actor=Actor(admin_user))
    volume = services.create_volume(
        dir_pool, name="extra.qcow2", capacity_gib=0.01, project=project, actor=Actor(admin_user)
    )
    info = hypervisor.define_domain(LOCAL_URI, guest_spec(panel_test_guest))
    try:
        vm = vm_services.sync_domain(local_host, info)
        vm.project = project
        vm.save()
        page = admin_client.get(f"/vms/{vm.pk}/").content.decode()
        assert "Attach a disk or CD-ROM" in page
        assert f"{dir_pool.name}/extra.qcow2" in page

        response = admin_client.post(
            f"/vms/{vm.pk}/disks/attach/",
            {
                "volume": volume.pk,
                "device": "disk",
                "bus": "virtio",
                "cache": "writeback",
                "persistent": "1",
            },
            follow=True,
        )
        text = page_text(response)
        assert "disk attach done" in text
        row = lxml_html.fromstring(response.content).xpath("//tr[@data-disk='vda']/td")
        cells = [td.text_content().strip() for td in row]
        assert cells[:6] == ["vda", "disk", "virtio", volume.path, "qcow2", "writeback"]

        response = admin_client.post(f"/vms/{vm.pk}/disks/detach/", {"target": "vda"}, follow=True)
        assert "disk detach done" in page_text(response)
        assert volume.path not in virsh("dumpxml", "--inactive", info.uuid)
    finally:
        hypervisor.undefine_domain(LOCAL_URI, info.uuid)


@pytest.mark.browser
@pytest.mark.stack
def test_a_browser_upload_moves_its_progress_bar_to_100(
    page, stack, transactional_db, dir_pool, admin_user, tmp_path
):
    data = os.urandom(24 * MIB)
    source = tmp_path / "tools.iso"
    source.write_bytes(data)
    page.goto(stack.url + "/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{stack.url}/storage/{dir_pool.pk}/")
    page.get_by_role("link", name="Upload a file…").click()
    # Every value the bar takes, recorded as it changes.
    page.evaluate(
        """() => { window.seen = []; const bar = document.querySelector('[data-upload-bar]');
        new MutationObserver(() => window.seen.push(bar.textContent))
          .observe(bar, {childList: true, characterData: true, subtree: true}); }"""
    )
    page.set_input_files("#file", str(source))
    expect(page.locator("#name")).to_have_value("tools.iso")
    page.get_by_role("button", name="Upload").click()

    expect(page.locator("[data-upload-bar]")).to_have_text("100 %", timeout=60_000)
    expect(page.locator("[data-upload-status]")).to_contain_text(
        f"Uploaded {len(data)} bytes into tools.iso"
    )
    seen = page.evaluate("() => window.seen")
    assert any(re.fullmatch(r"([1-9]|[1-9][0-9]) %", v) for v in seen), seen
    assert seen[-1] == "100 %"
    volume = Volume.objects.get(pool=dir_pool, name="tools.iso")
    with open(volume.path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(data).hexdigest()
