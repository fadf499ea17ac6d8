"""Browser uploads over a websocket, straight into libvirt's volume upload stream.

An HTTP PUT is buffered whole by the web server before the view sees it; a
websocket hands each frame on as it arrives, so here the file goes from the
browser to the host's volume chunk by chunk, without touching the web
server's disk. Protocol on ws/volumes/<id>/upload/:

  client → {"size": N}                 server → {"job": id} (or {"error": …} and close)
  client → binary chunks               server → {"received": bytes} after each
  server → {"done": true, "volume": {…}} or {"error": …}, then closes

The client keeps a few chunks in flight and waits for the acknowledgements,
so a slow host slows the browser instead of filling the server's memory. A
connection that drops before the last byte fails the job and removes the
volume (the browser made it for this upload); so does a user who is logged out,
disabled or loses the right to change the volume meanwhile (panel.socket_access).
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections
from django.http import Http404

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import ALLOCATE_SPACE, get_object_for_user
from panel.socket_access import AccessWatch

from . import services
from .models import Volume

CLOSE_NOT_FOUND = 4404
CLOSE_FORBIDDEN = 4403
CLOSE_REFUSED = 4400
IN_FLIGHT = 8  # chunks the server holds at most before the client must wait
_END = object()
_NOT_JSON = object()
_ABORT = object()


class _Aborted(Exception):
    """The browser went away before the last byte."""


class VolumeUploadConsumer(AccessWatch, AsyncJsonWebsocketConsumer):
    volume: Volume | None = None
    chunks: queue.Queue | None = None
    worker: threading.Thread | None = None

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.user = user
        pk = self.scope["url_route"]["kwargs"]["volume_id"]
        try:
            self.volume = await database_sync_to_async(get_object_for_user)(
                Volume.objects.select_related("pool__host", "project"), user, pk, ALLOCATE_SPACE
            )
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN)
        else:
            await self.watch_access(user.pk)

    def still_allowed(self, user: Any) -> tuple[int, str] | None:
        assert self.volume is not None
        try:
            get_object_for_user(Volume.objects.all(), user, self.volume.pk, ALLOCATE_SPACE)
        except Http404:
            return CLOSE_NOT_FOUND, "You may no longer see this volume: the upload stopped."
        except PermissionDenied:
            return CLOSE_FORBIDDEN, "You may no longer change this volume: the upload stopped."
        return None

    async def access_lost(self, code: int, message: str) -> None:
        await self.send_json({"error": message})
        await super().access_lost(code, message)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return _NOT_JSON

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.volume is None or self.worker is not None:
            return
        if not isinstance(content, dict):
            await self.send_json(
                {
                    "error": 'Start the upload with a JSON object {"size": <bytes>}, then send '
                    "the file as binary frames."
                }
            )
            await self.close(code=CLOSE_REFUSED)
            return
        try:
            size = int(content.get("size", 0)) if isinstance(content, dict) else 0
            job = await database_sync_to_async(services.start_upload)(
                self.volume, size, actor=Actor.of_scope(self.scope, self.user)
            )
        except (ServiceError, ValueError, TypeError) as exc:
            await self.send_json({"error": getattr(exc, "message", str(exc))})
            await self.close(code=CLOSE_REFUSED)
            return
        self.size, self.received = size, 0
        self.chunks = queue.Queue(maxsize=IN_FLIGHT)
        loop = asyncio.get_running_loop()
        self.worker = threading.Thread(
            target=self._stream, args=(job, loop), name=f"upload-{job.pk}", daemon=True
        )
        self.worker.start()
        await self.send_json({"job": job.pk})

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kw: Any
    ) -> None:
        if bytes_data is None:
            await super().receive(text_data=text_data, bytes_data=bytes_data, **kw)
            return
        if self.chunks is None:
            if self.volume is not None and self.worker is None:
                await self.send_json(
                    {"error": 'Send {"size": <bytes>} first, then the file as binary frames.'}
                )
                await self.close(code=CLOSE_REFUSED)
            return
        if self.received >= self.size:
            return
        chunk = bytes_data[: self.size - self.received]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.chunks.put, chunk)  # waits while the host catches up
        self.received += len(chunk)
        if self.received >= self.size:
            await loop.run_in_executor(None, self.chunks.put, _END)
        await self.send_json({"received": self.received})

    async def disconnect(self, code: int) -> None:
        await self.stop_watching()
        if self.worker is not None and self.worker.is_alive() and self.chunks is not None:
            # Handed over from a thread so a full queue never blocks the event loop; the
            # stream then fails the job and removes the volume.
            threading.Thread(target=self.chunks.put, args=(_ABORT,), daemon=True).start()

    def _incoming(self):
        while True:
            item = self.chunks.get()  # type: ignore[union-attr]
            if item is _END:
                return
            if item is _ABORT:
                raise _Aborted(f"the browser left after {self.received} of {self.size} bytes")
            yield item

    def _stream(self, job: Any, loop: asyncio.AbstractEventLoop) -> None:
        """In its own thread: the upload job, then the answer to the browser."""
        close_old_connections()
        assert self.volume is not None
        try:
            volume = services.run_upload(job, self.volume, self._incoming(), remove_on_failure=True)
            answer: dict[str, Any] = {
                "done": True,
                "job": job.pk,
                "volume": {"id": volume.pk, "name": volume.name, "format": volume.format},
            }
        except ServiceError as exc:
            answer = {"error": exc.message, "job": job.pk}
        finally:
            close_old_connections()
        asyncio.run_coroutine_threadsafe(self._finish(answer), loop)

    async def _finish(self, answer: dict[str, Any]) -> None:
        try:
            await self.send_json(answer)
            await self.close()
        except Exception:  # the browser is already gone
            return
