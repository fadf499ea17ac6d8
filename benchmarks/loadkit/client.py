"""HTTP/1.1 as one browser of the load run speaks it, on asyncio streams: keep-alive
connections reused while young, cookies kept (the CSRF token with them), and responses
read by length or chunks; and route(), a path without its ids, to name what failed."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from urllib.parse import urlencode

from .limits import KEEPALIVE_S, REQUEST_TIMEOUT_S

ID_IN_PATH = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27}|/\d+")


class Http:
    """One browser: keep-alive HTTP/1.1 connections to the web server and its cookies."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None, keep: bool = True):
        self.port = port
        self.cookies = dict(cookies or {})
        self.keep_cookies = keep
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < KEEPALIVE_S and not writer.is_closing():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return reader, writer, False

    async def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        body: Any = None,
        api: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        data = b""
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        head.append("Accept: application/json" if api else "Accept: text/html")
        if form is not None:
            data = urlencode(form).encode()
            head.append("Content-Type: application/x-www-form-urlencoded")
        elif body is not None:
            data = json.dumps(body).encode()
            head.append("Content-Type: application/json")
        if method != "GET":
            head.append(f"Content-Length: {len(data)}")
            head.append(f"Origin: http://127.0.0.1:{self.port}")
            if "csrftoken" in self.cookies:
                head.append(f"X-CSRFToken: {self.cookies['csrftoken']}")
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + data
        for attempt in (0, 1):
            reader, writer, reused = await self._connection()
            try:
                writer.write(raw)
                status, headers, cookies, content = await asyncio.wait_for(
                    read_response(reader), REQUEST_TIMEOUT_S
                )
            except (OSError, asyncio.IncompleteReadError) as exc:
                writer.close()
                stale = isinstance(exc, OSError) or not exc.partial  # type: ignore[attr-defined]
                if reused and attempt == 0 and stale:
                    continue  # a keep-alive connection the server had closed: as a browser does
                raise
            except BaseException:
                writer.close()
                raise
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer, time.monotonic()))
            if self.keep_cookies:
                for name, value in cookies:
                    if value:
                        self.cookies[name] = value
                    else:
                        self.cookies.pop(name, None)
            return status, headers, content
        raise RuntimeError("unreachable")

    def close(self) -> None:
        for _r, writer, _t in self.idle:
            writer.close()
        self.idle.clear()


async def read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, dict[str, str], list[tuple[str, str]], bytes]:
    """One HTTP/1.1 response: status, headers, cookies set, body (length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    cookies: list[tuple[str, str]] = []
    for line in lines[1:]:
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            pair = value.split(";", 1)[0]
            cname, _, cvalue = pair.partition("=")
            expired = "max-age=0" in value.lower() or "1970" in value
            cookies.append((cname.strip(), "" if expired else cvalue.strip().strip('"')))
        else:
            headers[name] = value
    if "content-length" in headers:
        return status, headers, cookies, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, headers, cookies, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, cookies, b""
    headers["connection"] = "close"
    return status, headers, cookies, await reader.read()


def route(path: str) -> str:
    """A path without its query and ids, to name what failed."""
    return ID_IN_PATH.sub("/<id>", path.split("?", 1)[0])
