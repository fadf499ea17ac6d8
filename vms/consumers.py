"""The consoles over websockets: the serial console, and the viewers' VNC proxy.

Both open with a ticket (see vms.consoles) and close once their user is logged
out, disabled or loses the right to the console (panel.socket_access).

Serial: bytes both ways between xterm.js and the guest. libvirt gives a console
to one stream at a time: a session with console input takes it over, and the
previous holder is closed with code 4409 and a notice, so two users never type
into one another's session unknowingly. A view-only session (viewers) never
takes it over and never writes to the guest: it holds the console only while
nobody else does, and otherwise watches a copy of the holder's output, which
every holder sends to the console's group (panel.events.console_group). When the
holder leaves, a watching viewer holds the console in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model

from panel import audit, events, hypervisor
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import CONSOLE, CONSOLE_INPUT, VIEW, allowed
from panel.socket_access import AccessWatch, background, close_reason

from . import consoles, rfb
from .models import VirtualMachine

log = logging.getLogger(__name__)

CLOSE_NO_TICKET = 4401
CLOSE_BAD_TICKET = 4403
CLOSE_NOT_RUNNING = 4404
CLOSE_TAKEN_OVER = 4409
CLOSE_ENDED = 4410
CLOSE_HOST_LOST = 4503

MIRROR_CHUNK = 1 << 16  # output bytes per message to the console group at most
# A watching viewer whose copy of the output stayed quiet this long tries to hold the
# console itself (its holder may have gone without a word: a web server killed).
MIRROR_RETRY_SECONDS = 10.0


def _ticket(scope: dict[str, Any]) -> str:
    return parse_qs(scope.get("query_string", b"").decode()).get("ticket", [""])[0]


def _console_access(user: Any, vm_id: str, *, typing: bool) -> tuple[int, str] | None:
    """None while user may use vm_id's console as they opened it; else (code, message)."""
    vm = VirtualMachine.objects.filter(pk=vm_id).first()
    if vm is None or not allowed(user, vm, VIEW):
        return CLOSE_NOT_RUNNING, "You may no longer see this VM."
    if not allowed(user, vm, CONSOLE):
        return CLOSE_BAD_TICKET, "Your role no longer allows this console."
    if typing and not allowed(user, vm, CONSOLE_INPUT):
        return (
            CLOSE_BAD_TICKET,
            "Your role no longer allows typing into this console: open it again to watch it.",
        )
    return None


class SerialConsoleConsumer(AccessWatch, AsyncWebsocketConsumer):
    """ws/vms/<uuid>/serial/?ticket=...: the guest's serial console as binary frames."""

    stream: hypervisor.ConsoleStream | None = None
    vm: VirtualMachine | None = None
    view_only = False
    opened = False
    ended = False

    async def connect(self) -> None:
        await self.accept()
        self.vm_id = str(self.scope["url_route"]["kwargs"]["vm_id"])
        self.tasks: list[asyncio.Task[None]] = []
        ticket = _ticket(self.scope)
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
        self.group = events.console_group(self.vm_id)
        self.loop = asyncio.get_running_loop()
        self.output: asyncio.Queue[bytes] = asyncio.Queue()
        self.mirror: asyncio.Queue[bytes] = asyncio.Queue()
        self.holding: object | None = None  # which stream this session holds, if any
        self.hold_lock = asyncio.Lock()
        self.last_mirrored = time.monotonic()
        self.tasks += [background(self._pump()), background(self._publish())]
        try:
            if self.view_only:
                await self.channel_layer.group_add(self.group, self.channel_name)
                with contextlib.suppress(hypervisor.ConsoleBusy):
                    # Held by someone else: their output comes through the group.
                    await self._hold(take_over=False)
                self.tasks.append(background(self._retake_when_quiet()))
            else:
                await self._hold(take_over=True)
        except hypervisor.HypervisorError as exc:
            await self.send(text_data=f"\r\n[console unavailable: {exc}]\r\n")
            await self.close(code=CLOSE_NOT_RUNNING)
            return
        self.opened = True
        self.started = time.monotonic()
        await self._audit("console.serial.open", "view only" if self.view_only else "")
        if self.view_only:
            await self.send(text_data="[view only: your keystrokes are not sent]\r\n")
        await self.watch_access(self.user_id)

    # --- holding the console -----------------------------------------------------------

    async def _hold(self, *, take_over: bool) -> None:
        """Open the console stream; its output goes to this socket and to the group."""
        assert self.vm is not None
        token = object()
        loop, output = self.loop, self.output

        def on_data(chunk: bytes) -> None:
            loop.call_soon_threadsafe(output.put_nowait, chunk)

        def on_close() -> None:
            asyncio.run_coroutine_threadsafe(self._ended(token), loop)

        stream = await sync_to_async(hypervisor.open_console, thread_sensitive=False)(
            self.vm.host.uri, self.vm_id, on_data, on_close, take_over=take_over
        )
        self.stream, self.holding = stream, token
        if stream.closed:
            # It ended before this session knew it held it: its own notice was ignored.
            background(self._ended(token))

    async def _try_hold(self) -> None:
        """A viewer holds the console if nobody does (and closes if the VM is gone)."""
        async with self.hold_lock:
            if self.stream is not None or self.ended:
                return
            try:
                await self._hold(take_over=False)
            except hypervisor.ConsoleBusy:
                return
            except hypervisor.HostUnavailable:
                return  # the host is away: a later try, or the access check, decides
            except hypervisor.HypervisorError:
                await self._close_with(
                    "console closed: the VM stopped; open the console again once it runs",
                    CLOSE_ENDED,
                )

    async def _release(self) -> None:
        """Let the stream go, and tell the viewers, one of whom may hold it now."""
        stream, self.stream, self.holding = self.stream, None, None
        if stream is None:
            return
        await sync_to_async(stream.close, thread_sensitive=False)()
        with contextlib.suppress(Exception):  # Redis away: viewers retry on their own
            await self.channel_layer.group_send(
                self.group, {"type": "console.released", "sender": self.channel_name}
            )

    async def _ended(self, token: object) -> None:
        if token is not self.holding or self.ended:
            return  # a stream this session already let go
        stream = self.stream
        host_lost = stream is not None and stream.host_lost
        await self._release()
        if host_lost:
            assert self.vm is not None
            await self._close_with(
                f"console closed: the connection to host {self.vm.host.name} was lost; "
                "reopen the console once the host is back up",
                CLOSE_HOST_LOST,
            )
            return
        if self.view_only:
            # Taken over by someone with console input, or the VM stopped: which one?
            await self._try_hold()
            if self.stream is None and not self.ended:
                await self.send(
                    text_data="\r\n[view only: someone with console access took the console; "
                    "you now watch their session]\r\n"
                )
            return
        await self._close_with(
            "console closed: the VM stopped, or another session took it over", CLOSE_TAKEN_OVER
        )

    async def _close_with(self, notice: str, code: int) -> None:
        self.ended = True
        with contextlib.suppress(OSError):  # the client is gone already
            await self.send(text_data=f"\r\n[{notice}]\r\n")
            await self.close(code=code)

    # --- output: to this socket, and a copy to the viewers -----------------------------

    async def _pump(self) -> None:
        while True:
            chunk = await self.output.get()
            while not self.output.empty() and len(chunk) < MIRROR_CHUNK:
                chunk += self.output.get_nowait()
            await self.send(bytes_data=chunk)
            self.mirror.put_nowait(chunk)

    async def _publish(self) -> None:
        # Apart from _pump, so that Redis never slows this socket's own output down.
        while True:
            chunk = await self.mirror.get()
            while not self.mirror.empty() and len(chunk) < MIRROR_CHUNK:
                chunk += self.mirror.get_nowait()
            try:
                await self.channel_layer.group_send(
                    self.group,
                    {"type": "console.output", "data": chunk, "sender": self.channel_name},
                )
            except Exception as exc:  # noqa: BLE001 - viewers miss output; this session goes on
                log.warning("console output of %s not copied to its viewers: %s", self.vm_id, exc)

    async def console_output(self, event: dict[str, Any]) -> None:
        """A copy of the holder's output, for a viewer that does not hold the console."""
        if event.get("sender") == self.channel_name or self.stream is not None or self.ended:
            return
        self.last_mirrored = time.monotonic()
        await self.send(bytes_data=event["data"])

    async def console_released(self, event: dict[str, Any]) -> None:
        """The holder let the console go: a watching viewer holds it in turn."""
        if self.view_only and event.get("sender") != self.channel_name:
            await self._try_hold()

    async def _retake_when_quiet(self) -> None:
        while not self.ended:
            await asyncio.sleep(MIRROR_RETRY_SECONDS)
            if self.stream is None and time.monotonic() - self.last_mirrored > MIRROR_RETRY_SECONDS:
                await self._try_hold()

    # --- input, access, the end ----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.stream is None or self.view_only:
            return
        data = bytes_data if bytes_data is not None else (text_data or "").encode()
        if data:
            try:
                await sync_to_async(self.stream.send, thread_sensitive=False)(data)
            except hypervisor.HypervisorError:
                await self.close(code=CLOSE_ENDED)

    def still_allowed(self, user: Any) -> tuple[int, str] | None:
        return _console_access(user, self.vm_id, typing=not self.view_only)

    async def access_lost(self, code: int, message: str) -> None:
        await self._close_with(f"console closed: {message}", code)

    async def disconnect(self, code: int) -> None:
        self.ended = True
        await self.stop_watching()
        for task in getattr(self, "tasks", []):
            task.cancel()
        if self.vm is None:
            return
        if self.view_only:
            with contextlib.suppress(Exception):  # Redis away: the group entry expires
                await self.channel_layer.group_discard(self.group, self.channel_name)
        await self._release()
        if self.opened:
            await self._audit("console.serial.close", f"{time.monotonic() - self.started:.0f} s")

    async def _audit(self, action: str, detail: str) -> None:
        def write() -> None:
            user = get_user_model().objects.filter(pk=self.user_id).first()
            vm = self.vm
            audit.record(
                Actor.of_scope(self.scope, user),
                action,
                vm,
                project=vm.project if vm is not None else None,
                detail=detail,
            )

        await database_sync_to_async(write)()


class VncViewConsumer(AccessWatch, AsyncWebsocketConsumer):
    """ws/vms/<uuid>/vnc-view/?ticket=...: a viewer's VNC session, without input.

    Full-access sessions go through websockify; a view-only ticket is valid only
    here, where the panel speaks RFB to both sides itself (vms.rfb): it logs in to
    the display (answering a VNC password itself), offers the viewer RFB 3.8 with
    no authentication, and passes on only the viewer's pixel format, encodings and
    update requests. Keys, pointer and clipboard never reach the VM.
    """

    async def connect(self) -> None:
        offered = self.scope.get("subprotocols") or []
        await self.accept("binary" if "binary" in offered else None)
        self.vm_id = str(self.scope["url_route"]["kwargs"]["vm_id"])
        self.pump: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()
        ticket = _ticket(self.scope)
        data = await sync_to_async(consoles.take_ticket)(ticket) if ticket else None
        user = self.scope.get("user")
        if (
            data is None
            or data.get("type") != "vnc"
            or data.get("vm") != self.vm_id
            or not data.get("view_only")
            or (getattr(user, "is_authenticated", False) and user.pk != data.get("user"))
        ):
            await self.close(code=CLOSE_BAD_TICKET if ticket else CLOSE_NO_TICKET)
            return
        self.user_id = data["user"]
        try:
            target = await database_sync_to_async(consoles.vnc_target)(self.vm_id)
        except ServiceError as exc:
            await self.close(code=CLOSE_NOT_RUNNING, reason=close_reason(exc.message))
            return
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), 10
            )
            self.writer = writer
            server_init = await asyncio.wait_for(
                rfb.open_server(reader, writer, target.password), 10
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, rfb.ProtocolError) as exc:
            log.warning("view-only VNC session to %s not opened: %s", self.vm_id, exc)
            await self.close(code=CLOSE_NOT_RUNNING, reason="The VM's display cannot be reached.")
            return
        self.viewer = rfb.ViewerSide(server_init)
        await self.send(bytes_data=rfb.VERSION)
        self.pump = background(self._relay(reader))
        await self.watch_access(self.user_id)

    async def _relay(self, reader: asyncio.StreamReader) -> None:
        await self.ready.wait()  # the viewer has its ServerInit: the server's messages follow
        while chunk := await reader.read(1 << 16):
            await self.send(bytes_data=chunk)
        await self.close(code=CLOSE_ENDED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.writer is None or bytes_data is None:
            return
        try:
            to_client, to_server = self.viewer.feed(bytes_data)
        except rfb.ProtocolError as exc:
            await self.close(code=CLOSE_BAD_TICKET, reason=close_reason(str(exc)))
            return
        if to_client:
            await self.send(bytes_data=to_client)
        if self.viewer.stage == "messages":
            self.ready.set()
        if to_server:
            self.writer.write(to_server)
            await self.writer.drain()

    def still_allowed(self, user: Any) -> tuple[int, str] | None:
        return _console_access(user, self.vm_id, typing=False)

    async def disconnect(self, code: int) -> None:
        await self.stop_watching()
        if self.pump is not None:
            self.pump.cancel()
        if self.writer is not None:
            self.writer.close()
