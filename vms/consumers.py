"""The serial console over a websocket: bytes both ways between xterm.js and the guest.

Opened with a ticket (see vms.consoles). libvirt allows one reader per serial
console: a new session takes the console over, and the previous one is closed
with code 4409 and a notice, so two users never type into one another's session
unknowingly. A view-only session (viewers) never writes to the guest.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from panel import audit, hypervisor

from . import consoles, rfb
from .models import VirtualMachine

CLOSE_NO_TICKET = 4401
CLOSE_BAD_TICKET = 4403
CLOSE_NOT_RUNNING = 4404
CLOSE_TAKEN_OVER = 4409
CLOSE_ENDED = 4410
CLOSE_HOST_LOST = 4503


class SerialConsoleConsumer(AsyncWebsocketConsumer):
    """ws/vms/<uuid>/serial/?ticket=...: the guest's serial console as binary frames."""

    stream: hypervisor.ConsoleStream | None = None

    async def connect(self) -> None:
        await self.accept()
        self.vm_id = str(self.scope["url_route"]["kwargs"]["vm_id"])
        ticket = parse_qs(self.scope.get("query_string", b"").decode()).get("ticket", [""])[0]
        if not ticket:
            await self.close(code=CLOSE_NO_TICKET)
            return
        data = await sync_to_async(consoles.take_ticket)(ticket)
        user = self.scope.get("user")
        if (
            data is None
            or data.get("type") != "serial"
            or data.get("vm") != self.vm_id
            or (getattr(user, "is_authenticated", False) and user.pk != data.get("user"))
        ):
            await self.close(code=CLOSE_BAD_TICKET)
            return
        self.view_only = bool(data.get("view_only"))
        self.user_id = data["user"]
        vm = await database_sync_to_async(
            lambda: (
                VirtualMachine.objects.select_related("host", "project")
                .filter(pk=self.vm_id)
                .first()
            )
        )()
        if vm is None:
            await self.close(code=CLOSE_NOT_RUNNING)
            return
        self.vm = vm
        loop = asyncio.get_running_loop()

        def on_data(chunk: bytes) -> None:
            asyncio.run_coroutine_threadsafe(self.send(bytes_data=chunk), loop)

        def on_close() -> None:
            asyncio.run_coroutine_threadsafe(self._ended(), loop)

        try:
            self.stream = await sync_to_async(hypervisor.open_console, thread_sensitive=False)(
                vm.host.uri, self.vm_id, on_data, on_close
            )
        except hypervisor.HypervisorError as exc:
            await self.send(text_data=f"\r\n[console unavailable: {exc}]\r\n")
            await self.close(code=CLOSE_NOT_RUNNING)
            return
        self.started = time.monotonic()
        await self._audit("console.serial.open", "view only" if self.view_only else "")
        if self.view_only:
            await self.send(text_data="[view only: your keystrokes are not sent]\r\n")

    async def _ended(self) -> None:
        if self.stream is not None and self.stream.host_lost:
            await self.send(
                text_data=f"\r\n[console closed: the connection to host {self.vm.host.name} "
                "was lost; reopen the console once the host is back up]\r\n"
            )
            await self.close(code=CLOSE_HOST_LOST)
            return
        await self.send(
            text_data="\r\n[console closed: the VM stopped, or another session took it over]\r\n"
        )
        await self.close(code=CLOSE_TAKEN_OVER)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.stream is None or self.view_only:
            return
        data = bytes_data if bytes_data is not None else (text_data or "").encode()
        if data:
            try:
                await sync_to_async(self.stream.send, thread_sensitive=False)(data)
            except hypervisor.HypervisorError:
                await self.close(code=CLOSE_ENDED)

    async def disconnect(self, code: int) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            await sync_to_async(stream.close, thread_sensitive=False)()
            await self._audit("console.serial.close", f"{time.monotonic() - self.started:.0f} s")

    async def _audit(self, action: str, detail: str) -> None:
        def write() -> None:
            from django.contrib.auth import get_user_model

            user = get_user_model().objects.filter(pk=self.user_id).first()
            audit.record(
                user,
                action,
                self.vm,
                project=self.vm.project,
                detail=detail,
                source_ip=(self.scope.get("client") or [None])[0],
            )

        await database_sync_to_async(write)()


class VncViewConsumer(AsyncWebsocketConsumer):
    """ws/vms/<uuid>/vnc-view/?ticket=...: a viewer's VNC session, input filtered out.

    Full-access sessions go through websockify; a view-only ticket is valid only
    here, where every client message is checked (vms.rfb.ViewOnlyFilter) and
    keys, pointer and clipboard never reach the VM.
    """

    async def connect(self) -> None:
        offered = self.scope.get("subprotocols") or []
        await self.accept("binary" if "binary" in offered else None)
        self.vm_id = str(self.scope["url_route"]["kwargs"]["vm_id"])
        self.pump: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None
        ticket = parse_qs(self.scope.get("query_string", b"").decode()).get("ticket", [""])[0]
        data = await sync_to_async(consoles.take_ticket)(ticket) if ticket else None
        if (
            data is None
            or data.get("type") != "vnc"
            or data.get("vm") != self.vm_id
            or not data.get("view_only")
        ):
            await self.close(code=CLOSE_BAD_TICKET if ticket else CLOSE_NO_TICKET)
            return
        try:
            reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(data["host"], int(data["port"])), 10
            )
        except (OSError, TimeoutError):
            await self.close(code=CLOSE_NOT_RUNNING)
            return
        self.filter = rfb.ViewOnlyFilter()
        self.pump = asyncio.create_task(self._relay(reader))

    async def _relay(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(1 << 16):
            await self.send(bytes_data=chunk)
        await self.close(code=CLOSE_ENDED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.writer is None or bytes_data is None:
            return
        try:
            allowed = self.filter.feed(bytes_data)
        except rfb.ProtocolError:
            await self.close(code=CLOSE_BAD_TICKET)
            return
        if allowed:
            self.writer.write(allowed)
            await self.writer.drain()

    async def disconnect(self, code: int) -> None:
        if self.pump is not None:
            self.pump.cancel()
        if self.writer is not None:
            self.writer.close()
