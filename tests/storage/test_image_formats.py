"""A volume's format is recorded, never read from its content (issue 18, item 1).

The header check (oslo.utils' format inspector) on images qemu-img writes here, and the
services on the real libvirtd: a refresh keeps the recorded format, a volume found on the
host is unusable until an admin assigns it with a checked format, an upload may name only
a volume of its own project as its backing file, and qemu-img is given the recorded chain.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from panel import services as panel_services
from panel.actors import Actor
from panel.hypervisor import images
from panel.models import AuditEvent, Job
from storage import services
from storage.models import FormatSource, Volume
from storage.tasks import volume_job_task

pytestmark = [pytest.mark.timeout(180)]
MIB = 1024 * 1024


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True)


def head_of(path: Path) -> tuple[bytes, bool]:
    data = path.read_bytes()[: images.HEAD_BYTES]
    return data, len(data) < images.HEAD_BYTES


# --- the header check ------------------------------------------------------------------


def test_it_reports_the_backing_file_a_qcow2_header_names(tmp_path):
    image = tmp_path / "o.qcow2"
    qemu_img(
        "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/shadow", "-u", str(image), "1M"
    )
    head, whole = head_of(image)

    facts = images.inspect_head(head, "qcow2", whole=whole)

    assert facts.problems == ()
    assert facts.backing_file == "/etc/shadow"


def test_it_refuses_a_qcow2_image_declared_raw(tmp_path):
    image = tmp_path / "o.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(image), "1M")
    head, whole = head_of(image)

    facts = images.inspect_head(head, "raw", whole=whole)

    assert facts.detected == ("qcow2",)
    assert "the content is a qcow2 image, not raw" in facts.problems[0]


def test_it_refuses_a_qcow2_external_data_file(tmp_path):
    image = tmp_path / "o.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'd'}", str(image), "1M")
    head, whole = head_of(image)

    assert "external data file" in images.inspect_head(head, "qcow2", whole=whole).problems[0]


def test_it_passes_a_version_2_qcow2_whose_extensions_sit_where_v3_keeps_flags(tmp_path):
    # libvirt makes compat=0.10 images: bytes 72-80 are a header extension there, which the
    # inspector alone takes for the external data file bit.
    base, image = tmp_path / "b.qcow2", tmp_path / "o.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "1M")
    qemu_img(
        "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-F", "qcow2", "-b", str(base),
        str(image),
    )  # fmt: skip
    head, whole = head_of(image)

    facts = images.inspect_head(head, "qcow2", whole=whole)

    assert facts.problems == ()
    assert facts.backing_file == str(base)


def test_it_refuses_a_vmdk_whose_extent_is_another_file():
    descriptor = (
        b"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        b'createType="monolithicFlat"\nRW 2048 FLAT "/etc/shadow" 0\n'
    )

    facts = images.inspect_head(descriptor, "vmdk", whole=True)

    assert "extents" in facts.problems[0]
    assert "vmdk" in images.inspect_head(descriptor, "raw", whole=True).problems[0]


def test_it_reports_the_parent_a_vmdk_descriptor_names(tmp_path):
    base, image = tmp_path / "b.vmdk", tmp_path / "o.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", str(base), "1M")
    qemu_img("create", "-q", "-f", "vmdk", "-F", "vmdk", "-b", str(base), str(image), "1M")
    head, whole = head_of(image)

    assert images.inspect_head(head, "vmdk", whole=whole).backing_file == str(base)


def test_it_reads_relative_and_pseudo_protocol_backing_names_as_qemu_would():
    assert images.backing_path("/pool/o.qcow2", "base.img") == "/pool/base.img"
    assert images.backing_path("/pool/o.qcow2", "../etc/shadow") == "/etc/shadow"
    assert images.backing_path("/pool/o.qcow2", 'json:{"x":1}') == 'json:{"x":1}'
    assert images.backing_path("/pool/o.qcow2", "nbd://h/x") == "nbd://h/x"


# --- the services on the real libvirtd -----------------------------------------------------


@pytest.fixture
def project(db, admin_user):
    return panel_services.create_project(name="alpha", actor=Actor(admin_user))


@pytest.fixture
def other(db, admin_user):
    return panel_services.create_project(name="beta", actor=Actor(admin_user))


@pytest.mark.libvirt
def test_it_keeps_the_recorded_format_and_a_raw_volumes_own_size_on_refresh(dir_pool, admin_user):
    vol = services.create_volume(
        dir_pool, name="disk.img", format="raw", capacity_gib=8 / 1024, actor=Actor(admin_user)
    )
    header = Path(vol.path).parent / "h.qcow2"
    qemu_img(
        "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/shadow", "-u", str(header), "1T"
    )
    with open(vol.path, "r+b") as disk:  # as a guest writes onto its raw disk
        disk.write(header.read_bytes())
    header.unlink()

    services.refresh_pool_row(dir_pool)

    vol.refresh_from_db()
    assert (vol.format, vol.format_source, vol.backing) == ("raw", FormatSource.CREATED, [])
    assert vol.capacity == 8 * MIB  # the file's size, not the 1 TiB the header claims


@pytest.mark.libvirt
def test_it_uses_a_found_volume_only_once_an_admin_assigns_it_a_checked_format(
    dir_pool, pool_dir, admin_user, project
):
    qemu_img("create", "-q", "-f", "qcow2", str(pool_dir / "found.qcow2"), "4M")
    qemu_img(
        "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/shadow", "-u",
        str(pool_dir / "evil.qcow2"), "4M",
    )  # fmt: skip
    services.refresh_pool_row(dir_pool)
    found = Volume.objects.get(pool=dir_pool, name="found.qcow2")
    evil = Volume.objects.get(pool=dir_pool, name="evil.qcow2")
    assert found.format_source == evil.format_source == FormatSource.FOUND

    with pytest.raises(services.ConflictError, match="has not been assigned"):
        services.copy_volume(found, name="copy.qcow2", actor=Actor(admin_user))
    with pytest.raises(services.ServiceError, match="qcow2 image, not raw"):
        services.assign_volume(found, project, "raw", actor=Actor(admin_user))
    with pytest.raises(services.ServiceError, match="/etc/shadow, which is not a volume"):
        services.assign_volume(evil, project, "qcow2", actor=Actor(admin_user))
    assert AuditEvent.objects.filter(action="volume.assign", result="failure").count() == 2

    found = services.assign_volume(found, project, "qcow2", actor=Actor(admin_user))

    assert (found.project, found.format, found.format_source) == (
        project,
        "qcow2",
        FormatSource.ASSIGNED,
    )
    services.refresh_pool_row(dir_pool)
    evil.refresh_from_db()
    assert evil.format_source == FormatSource.FOUND and evil.project is None


@pytest.mark.libvirt
def test_it_takes_an_uploaded_overlay_on_its_own_projects_volume_only(
    dir_pool, admin_user, project, other
):
    def volume(name: str, fmt: str, owner) -> Volume:
        return services.create_volume(
            dir_pool,
            name=name,
            format=fmt,
            capacity_gib=4 / 1024,
            project=owner,
            actor=Actor(admin_user),
        )

    base, theirs = volume("base.img", "raw", project), volume("theirs.img", "raw", other)
    base_bytes = b"BASE-" * 1000
    job = services.start_upload(base, len(base_bytes), actor=Actor(admin_user))
    services.run_upload(job, base, [base_bytes], remove_on_failure=False)

    def overlay_on(backing: Volume, name: str) -> bytes:
        path = Path(backing.path).parent / f"{name}.src"
        qemu_img(
            "create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing.path, "-u", str(path), "4M"
        )
        data = path.read_bytes()
        path.unlink()
        return data

    mine = volume("mine.qcow2", "qcow2", project)
    data = overlay_on(base, "mine")
    services.run_upload(
        services.start_upload(mine, len(data), actor=Actor(admin_user)),
        mine,
        [data],
        remove_on_failure=False,
    )
    mine.refresh_from_db()
    assert mine.format_source == FormatSource.DECLARED
    assert mine.backing == [{"path": base.path, "format": "raw"}]

    sneaky = volume("sneaky.qcow2", "qcow2", project)
    data = overlay_on(theirs, "sneaky")
    with pytest.raises(services.ServiceError, match="which is not a volume of alpha"):
        services.run_upload(
            services.start_upload(sneaky, len(data), actor=Actor(admin_user)),
            sneaky,
            [data],
            remove_on_failure=False,
        )

    # A clone reads the overlay through its recorded chain: the base's data is in it.
    job = services.copy_volume(mine, name="flat.img", format="raw", actor=Actor(admin_user))
    volume_job_task(job.pk)
    assert Job.objects.get(pk=job.pk).state == "succeeded"
    flat = Volume.objects.get(pool=dir_pool, name="flat.img")
    assert Path(flat.path).read_bytes().startswith(base_bytes)
    assert (flat.format, flat.format_source, flat.backing) == ("raw", FormatSource.CREATED, [])


# --- rows from before the format was recorded ---------------------------------------------


@pytest.mark.sqlite
def test_it_keeps_an_old_rows_chain_only_where_it_stays_inside_the_project(transactional_db):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("storage", "0003_volume_details")], [("storage", "0004_volume_format_source")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    host = old.get_model("panel", "Host").objects.create(name="h", uri="test:///default")
    project = old.get_model("panel", "Project").objects.create(name="alpha")
    stranger = old.get_model("panel", "Project").objects.create(name="beta")
    pool = old.get_model("storage", "StoragePool").objects.create(host=host, name="p", type="dir")
    Volume = old.get_model("storage", "Volume")

    def row(name: str, owner, backing=(), shared=False):
        return Volume.objects.create(
            pool=pool,
            name=name,
            path=f"/p/{name}",
            format="qcow2",
            project=owner,
            backing=[{"path": p, "format": "raw"} for p in backing],
            shared=shared,
        )

    row("base", project)
    row("theirs", stranger)
    row("image", None, shared=True)
    row("overlay", project, ["/p/base"])
    row("on-image", project, ["/p/image"])
    row("on-theirs", project, ["/p/theirs"])
    row("on-shadow", project, ["/etc/shadow"])
    row("found", None, ["/p/base"])

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    Volume = executor.loader.project_state(after).apps.get_model("storage", "Volume")
    rows = {v.name: v for v in Volume.objects.all()}
    assert {n: v.format_source for n, v in rows.items()} == {
        "base": "declared",
        "theirs": "declared",
        "image": "declared",
        "overlay": "declared",
        "on-image": "declared",
        "on-theirs": "declared",
        "on-shadow": "declared",
        "found": "found",
    }
    assert [b["path"] for b in rows["overlay"].backing] == ["/p/base"]
    assert [b["path"] for b in rows["on-image"].backing] == ["/p/image"]
    assert rows["on-theirs"].backing == rows["on-shadow"].backing == []
    latest = MigrationExecutor(connection)  # the schema as the next test expects
    latest.migrate(latest.loader.graph.leaf_nodes())
