"""The image library's fetch job: an image streamed from its URL into a new volume of the
pool through libvirt (remote hosts too), its header checked against the stated format
before the first byte is written, its SHA-256 computed on the way and compared with the
one typed or read from a SUMS file. A refused, failed or cancelled fetch removes the
volume it was writing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator

import urllib3

from panel import hypervisor, jobs
from panel.exceptions import ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import images
from panel.hypervisor import storage as hv
from panel.models import Job
from storage.models import FormatSource, ImageState, LibraryImage, Volume
from storage.services.sync import save_volume, touch_pool
from storage.services.transfers import discard_volume, take_head
from storage.services.trust import check_head
from storage.services.validation import as_gib
from vms.install import tree

LIBRARY = tree.UrlRules(
    "PANEL_LIBRARY_MIRRORS",
    "url",
    "Library images",
    "Give the image's web address, e.g. https://cloud.example.org/images/os-cloud.qcow2.",
)
SUMS_FIELD = "sums_url"
SUMS_RULES = tree.UrlRules(LIBRARY.setting, SUMS_FIELD, LIBRARY.what, LIBRARY.example)
MAX_SUMS_BYTES = 1024 * 1024
CHUNK = 1024 * 1024
REPORT_SECONDS = 0.5
HEX = re.compile(r"^[0-9a-f]{64}\Z")
# "<hex>  <name>" or "<hex> *<name>" (sha256sum), or "SHA256 (<name>) = <hex>" (BSD).
_GNU_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(.+)$")
_BSD_LINE = re.compile(r"^SHA256 \((.+)\) ?= ?([0-9a-fA-F]{64})$")


def file_name(url: str) -> str:
    """The last segment of the URL's path: the name a SUMS file lists the image under."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def sha256_in_sums(text: str, name: str) -> str | None:
    """The digest text (a SHA256SUMS file, GNU or BSD lines) gives for name, or None."""
    for raw in text.splitlines():
        line = raw.strip()
        gnu, bsd = _GNU_LINE.match(line), _BSD_LINE.match(line)
        if gnu and gnu.group(2).strip().lstrip("./") == name:
            return gnu.group(1).lower()
        if bsd and bsd.group(1).strip().lstrip("./") == name:
            return bsd.group(2).lower()
    return None


def expected_sha256(image: LibraryImage) -> str:
    """The digest the image must have: typed, or read from its SUMS file."""
    if image.sha256:
        return image.sha256
    name = file_name(image.source_url)
    response = tree.open_url(image.sums_url, SUMS_RULES, timeout=60)
    try:
        if response.status >= 400:
            raise ServiceError(
                f"The SUMS file {image.sums_url} answered {response.status} {response.reason}.",
                field=SUMS_FIELD,
            )
        body = response.read(MAX_SUMS_BYTES + 1, decode_content=True)
    finally:
        response.release_conn()
    if len(body) > MAX_SUMS_BYTES:
        raise ServiceError(
            f"{image.sums_url} is larger than a SUMS file can be ({MAX_SUMS_BYTES} bytes).",
            field=SUMS_FIELD,
        )
    digest = sha256_in_sums(body.decode("utf-8", "replace"), name)
    if digest is None:
        raise ServiceError(
            f"The SUMS file {image.sums_url} lists no SHA-256 for {name}: give the SUMS file "
            "of this image, or type its SHA-256.",
            field=SUMS_FIELD,
        )
    return digest


def run_fetch(job: Job) -> None:
    """The body of a library fetch job (see the module's docstring)."""
    image = (
        LibraryImage.objects.select_related("pool__host", "volume")
        .filter(pk=job.result["image"])
        .first()
    )
    if image is None or image.volume is None:
        raise ServiceError("The library image of this job was removed.")
    volume = image.volume
    made: list[bool] = []
    try:
        expected = expected_sha256(image)
        jobs.report(job.pk, progress=1, log_line=f"expecting SHA-256 {expected}")
        digest = _fetch_into(job, image, volume, made)
        if digest != expected:
            raise ServiceError(
                f"The SHA-256 of {image.source_url} is {digest}, but {expected} was expected: "
                "the download is corrupt or not the image meant. The volume was removed; "
                "check the URL and the checksum."
            )
    except BaseException as exc:
        _discard(volume, bool(made))
        message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
        LibraryImage.objects.filter(pk=image.pk).update(
            state=ImageState.FAILED, message=str(message)[:500], volume=None
        )
        raise
    LibraryImage.objects.filter(pk=image.pk).update(
        state=ImageState.READY, sha256=digest, message=""
    )
    jobs.report(
        job.pk, progress=100, message=f"{image.name} is ready.", log_line=f"SHA-256 {digest} ok"
    )
    touch_pool(image.pool)


def _fetch_into(job: Job, image: LibraryImage, volume: Volume, made: list[bool]) -> str:
    """Stream the image's URL into a new volume (made gets True once it is on the host);
    the SHA-256 of what was streamed."""
    host = image.pool.host
    response = tree.open_url(image.source_url, LIBRARY, timeout=120)
    try:
        length = _length(image, response)
        jobs.report(job.pk, log_line=f"downloading {image.source_url} ({length} bytes)")
        chunks = _read(image.source_url, response)
        head, rest = take_head(chunks, min(length, images.HEAD_BYTES))
        # Checked against the stated format before anything reaches the host.
        check_head(volume, head, whole=length <= images.HEAD_BYTES, what="published")
        spec = hypervisor.VolumeSpec(name=volume.name, capacity=length, format=volume.format)
        with on_host(host, f"Volume {volume.name}"):
            hv.create_volume(host.uri, image.pool.name, spec)
        made.append(True)
        digest = hashlib.sha256()

        def hashed() -> Iterator[bytes]:
            for chunk in itertools.chain([head], rest):
                digest.update(chunk)
                yield chunk

        with on_host(host, f"Download into {volume.name}"):
            info = hv.upload_volume(
                host.uri, image.pool.name, volume.name, hashed(), length, progress=_progress(job)
            )
    finally:
        response.release_conn()
    save_volume(volume, info)
    volume.format_source, volume.backing = FormatSource.DECLARED, []
    volume.save(update_fields=["format_source", "backing"])
    return digest.hexdigest()


def _length(image: LibraryImage, response: urllib3.BaseHTTPResponse) -> int:
    """The file's size as its server announces it; a refusal when it cannot be had or
    the pool has no room for it."""
    if response.status >= 400:
        raise ServiceError(
            f"{image.source_url} answered {response.status} {response.reason}. "
            "Check the URL in a browser.",
            field="url",
        )
    value = response.headers.get("Content-Length", "")
    if not value.isdigit() or int(value) == 0:
        raise ServiceError(
            f"{image.source_url} does not say how large the file is (no Content-Length): "
            "the panel needs the size to make the volume. Use a server that sends it.",
            field="url",
        )
    length = int(value)
    if length > image.pool.available > 0:
        raise ServiceError(
            f"The image is {as_gib(length)}; pool {image.pool.name} has "
            f"{as_gib(image.pool.available)} free.",
            field="pool",
        )
    return length


def _read(url: str, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    done = 0
    try:
        while chunk := response.read(CHUNK, decode_content=False):
            done += len(chunk)
            yield chunk
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ServiceError(
            f"The download of {url} broke off after {done} bytes ({exc}). Try again."
        ) from exc


def _progress(job: Job) -> Callable[[int, int], None]:
    last = {"at": 0.0}

    def progress(done: int, total: int) -> None:
        # At most twice a second: each report is a database write and a push to browsers.
        now = time.monotonic()
        if now - last["at"] >= REPORT_SECONDS or done == total:
            last["at"] = now
            jobs.report(
                job.pk, progress=1 + int(98 * done / total), message=f"{done} of {total} bytes"
            )

    return progress


def _discard(volume: Volume, on_host_too: bool) -> None:
    """Remove the volume the fetch was writing: on the host (when it got there), then its row."""
    if on_host_too:
        discard_volume(volume)
    else:
        Volume.objects.filter(pk=volume.pk).delete()
