"""The serial console of a domain as a byte stream, both ways.

The stream is non-blocking and driven by the libvirt event loop thread: bytes
from the guest arrive through on_data (called on that thread); send() writes
to the guest from any thread. Each stream has a connection of its own, so that
a lost host (libvirtd killed, network gone) ends the stream at once through the
connection's close callback instead of leaving it silent.

libvirt gives a serial console to one stream at a time: open_console() takes it
over from whoever holds it (their stream ends), or, with take_over=False, raises
ConsoleBusy instead, so a session that must not disturb others (a viewer's) can
watch without taking it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import libvirt

from . import connection
from .connection import check_uri, event_loop, libvirt_errors, open_connection
from .errors import Conflict, HostUnavailable

log = logging.getLogger(__name__)


class ConsoleBusy(Conflict):
    """Another stream holds the domain's console and this one would not take it over."""


class ConsoleStream:
    """An open serial console of one domain; close() it when done."""

    def __init__(
        self,
        uri: str,
        uuid: str,
        on_data: Callable[[bytes], None] | None = None,
        on_close: Callable[[], None] | None = None,
        *,
        force: bool = True,
    ) -> None:
        event_loop.ensure()
        self._on_data = on_data
        self._on_close = on_close
        self._closed = False
        self._released = False
        self.host_lost = False
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self._cond = threading.Condition()
        conn = open_connection(check_uri(uri), connection.connect_timeout())
        self._conn = conn
        with contextlib.suppress(libvirt.libvirtError):
            conn.setKeepAlive(5, 3)
        with contextlib.suppress(libvirt.libvirtError):
            conn.registerCloseCallback(self._conn_closed, None)
        try:
            self._attach(conn, uuid, force)
        except BaseException:
            self._release()
            raise

    def _attach(self, conn: libvirt.virConnect, uuid: str, force: bool) -> None:
        with libvirt_errors():
            dom = conn.lookupByUUIDString(uuid)
            if not dom.isActive():
                raise Conflict(
                    f"Domain '{dom.name()}' is not running: start it to use its console."
                )
            self._stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            flags = libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else 0
            try:
                dom.openConsole(None, self._stream, flags)
            except libvirt.libvirtError as exc:
                # libvirt says "Active console session exists for this domain".
                if not force and exc.get_error_code() == libvirt.VIR_ERR_OPERATION_FAILED:
                    raise ConsoleBusy(exc.get_error_message()) from exc
                raise
            self._stream.eventAddCallback(
                libvirt.VIR_STREAM_EVENT_READABLE
                | libvirt.VIR_STREAM_EVENT_ERROR
                | libvirt.VIR_STREAM_EVENT_HANGUP,
                self._on_event,
                None,
            )

    def _on_event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            while True:
                try:
                    data = stream.recv(65536)
                except libvirt.libvirtError:
                    self._hangup()
                    return
                if data == -2:  # would block: nothing more for now
                    return
                if not data:  # end of stream: the domain went away
                    self._hangup()
                    return
                assert isinstance(data, bytes)
                with self._cond:
                    self._buffer.extend(data)
                    del self._buffer[:-1_000_000]
                    self._cond.notify_all()
                if self._on_data is not None:
                    try:
                        self._on_data(data)
                    except Exception:  # noqa: BLE001 - a bad consumer must not kill the loop
                        log.exception("console consumer failed")
        if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
            self._hangup()

    def _conn_closed(self, _conn: libvirt.virConnect, _reason: int, _opaque: object) -> None:
        self.host_lost = True
        self._hangup()

    def _hangup(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(libvirt.libvirtError):
            self._stream.eventRemoveCallback()
        with contextlib.suppress(libvirt.libvirtError):
            self._stream.abort()
        with self._cond:
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close()

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: bytes, timeout: float = 5.0) -> None:
        """Write bytes to the guest's serial port."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            if self._closed:
                raise HostUnavailable("The console stream is closed.")
            try:
                sent = self._stream.send(bytes(view))
            except libvirt.libvirtError as exc:
                self._hangup()
                raise HostUnavailable(f"Console write failed: {exc.get_error_message()}") from exc
            if sent == -2:
                if time.monotonic() > deadline:
                    raise HostUnavailable("The console did not accept input in time.")
                time.sleep(0.01)
                continue
            view = view[sent:]

    def read_until(self, needle: bytes, timeout: float, start: int = 0) -> bytes:
        """Wait until needle shows up after offset start; return everything read so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while needle not in self._buffer[start:]:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise TimeoutError(
                        f"{needle!r} did not appear on the console within {timeout} s; "
                        f"last output: {bytes(self._buffer[-200:])!r}"
                    )
                self._cond.wait(remaining)
            return bytes(self._buffer)

    def output(self) -> bytes:
        """Everything the guest printed since the stream opened (last MB)."""
        with self._cond:
            return bytes(self._buffer)

    def close(self) -> None:
        """Detach from the console; the domain keeps running."""
        with self._lock:
            was_closed, self._closed = self._closed, True
        if not was_closed:
            with contextlib.suppress(libvirt.libvirtError):
                self._stream.eventRemoveCallback()
            with contextlib.suppress(libvirt.libvirtError):
                self._stream.finish()
        self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()


def open_console(
    uri: str,
    uuid: str,
    on_data: Callable[[bytes], None] | None = None,
    on_close: Callable[[], None] | None = None,
    *,
    take_over: bool = True,
) -> ConsoleStream:
    """Attach to a running domain's serial console: taking it over from another stream,
    or with take_over=False raising ConsoleBusy while another stream holds it."""
    return ConsoleStream(uri, uuid, on_data, on_close, force=take_over)
