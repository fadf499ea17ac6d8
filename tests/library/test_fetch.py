"""Adding images to the library from a URL on the real libvirtd, the fetch job run in the
test process: the SHA-256 from a SUMS file or typed, a wrong one refused with no volume
left, and a header that is not the stated format (or names a backing file) refused."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from panel.actors import Actor
from panel.models import Job
from storage import services
from storage.models import LibraryImage, Volume
from storage.tasks import library_fetch_task
from tests.create.conftest import volumes_in
from tests.library.conftest import IMAGE

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


def add(pool, mirror, admin_user, name=IMAGE, **kwargs) -> LibraryImage:
    spec = services.ImageSpec(
        name=name, kind=kwargs.pop("kind", "cloud"), format=kwargs.pop("format", ""), public=True
    )
    return services.add_from_url(
        pool, spec, url=mirror.url(kwargs.pop("file", name)), actor=Actor(admin_user), **kwargs
    )


def fetch(image: LibraryImage) -> tuple[LibraryImage, Job]:
    library_fetch_task(image.job_id)
    image.refresh_from_db()
    return image, Job.objects.get(pk=image.job_id)


def test_an_image_from_a_url_is_verified_by_its_sums_file(dir_pool, mirror, admin_user):
    image, job = fetch(add(dir_pool, mirror, admin_user, sums_url=mirror.url("SHA256SUMS")))
    assert job.state == "succeeded", job.log
    assert image.state == "ready" and image.sha256 == mirror.sha256
    assert IMAGE in volumes_in(dir_pool.name)
    volume = Volume.objects.get(pk=image.volume_id)
    assert volume.format == "qcow2" and volume.format_source == "declared"
    assert volume.capacity == 32 * 1024 * 1024 and volume.shared
    on_disk = Path(volume.path).read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == mirror.sha256


def test_a_wrong_checksum_fails_the_job_and_leaves_no_volume(dir_pool, mirror, admin_user):
    wrong = "0" * 64
    image, job = fetch(add(dir_pool, mirror, admin_user, sha256=wrong))
    assert job.state == "failed"
    assert mirror.sha256 in job.message and wrong in job.message
    assert image.state == "failed" and image.volume is None
    assert IMAGE not in volumes_in(dir_pool.name)
    assert not Volume.objects.filter(pool=dir_pool, name=IMAGE).exists()


def test_an_iso_is_checked_as_raw_and_read_from_a_bsd_style_line(dir_pool, mirror, admin_user):
    digest = hashlib.sha256((mirror.root / "installer.iso").read_bytes()).hexdigest()
    (mirror.root / "BSD.SUMS").write_text(f"SHA256 (installer.iso) = {digest}\n")
    image, job = fetch(
        add(
            dir_pool,
            mirror,
            admin_user,
            "installer.iso",
            kind="iso",
            sums_url=mirror.url("BSD.SUMS"),
        )
    )
    assert job.state == "succeeded", job.log
    assert image.format == "raw" and image.sha256 == digest


def test_an_image_whose_header_is_not_the_stated_format_is_refused(dir_pool, mirror, admin_user):
    # A qcow2 file stated as raw: qemu would read it as qcow2 if asked to probe.
    image, job = fetch(
        add(
            dir_pool,
            mirror,
            admin_user,
            "disguised.img",
            file=IMAGE,
            format="raw",
            sha256=mirror.sha256,
        )
    )
    assert job.state == "failed"
    assert "disguised.img cannot be published" in job.message
    assert "disguised.img" not in volumes_in(dir_pool.name)


def test_a_sums_file_without_the_image_is_refused(dir_pool, mirror, admin_user):
    (mirror.root / "OTHER.SUMS").write_text(f"{'1' * 64}  other.qcow2\n")
    image, job = fetch(add(dir_pool, mirror, admin_user, sums_url=mirror.url("OTHER.SUMS")))
    assert job.state == "failed"
    assert f"lists no SHA-256 for {IMAGE}" in job.message
    assert IMAGE not in volumes_in(dir_pool.name)


def test_sums_lines_in_both_forms_are_read():
    text = f"{'a' * 64}  one.qcow2\n{'B' * 64} *two.iso\nSHA256 (three.img) = {'c' * 64}\n"
    assert services.sha256_in_sums(text, "one.qcow2") == "a" * 64
    assert services.sha256_in_sums(text, "two.iso") == "b" * 64
    assert services.sha256_in_sums(text, "three.img") == "c" * 64
    assert services.sha256_in_sums(text, "four.img") is None


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Sends files 256 KiB at a time, 50 ms apart: a download that takes a while."""

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        while chunk := source.read(256 * 1024):
            outputfile.write(chunk)
            time.sleep(0.05)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        return None


def test_a_fetch_cancelled_midway_removes_its_partial_volume(
    transactional_db, dir_pool, mirror, admin_user
):
    data = os.urandom(16 * 1024 * 1024)
    (mirror.root / "big.img").write_bytes(data)
    handler = functools.partial(SlowHandler, directory=str(mirror.root.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # The cancelled fetch hangs up mid-file: the broken pipe is expected, not news.
    server.handle_error = lambda *args: None  # type: ignore[method-assign]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    slow = f"http://127.0.0.1:{server.server_address[1]}/images/"
    try:
        with override_settings(PANEL_LIBRARY_MIRRORS=[slow]):
            image = services.add_from_url(
                dir_pool,
                services.ImageSpec(name="big.img", kind="cloud", format="raw"),
                url=slow + "big.img",
                sha256=hashlib.sha256(data).hexdigest(),
                actor=Actor(admin_user),
            )

            def cancel_once_writing() -> None:
                # As the job's Cancel button does, once the first bytes are in the volume.
                deadline = time.monotonic() + 30
                try:
                    while time.monotonic() < deadline:
                        if "bytes" in Job.objects.get(pk=image.job_id).message:
                            Job.objects.filter(pk=image.job_id).update(cancel_requested=True)
                            return
                        time.sleep(0.05)
                finally:
                    connection.close()

            canceller = threading.Thread(target=cancel_once_writing)
            canceller.start()
            image, job = fetch(image)
            canceller.join()
    finally:
        server.shutdown()
        server.server_close()
    assert job.state == "cancelled", job.log
    assert image.state == "failed"
    assert "big.img" not in volumes_in(dir_pool.name)
    assert not Volume.objects.filter(pool=dir_pool, name="big.img").exists()
