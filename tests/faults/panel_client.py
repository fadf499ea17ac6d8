"""A browser session and an API client of a running panel, for fault tests."""

from __future__ import annotations

import json
from urllib.error import HTTPError
from urllib.request import Request, urlopen


class Panel:
    """HTTP clients of the running stack: a browser session and an API token."""

    def __init__(self, url: str, sessionid: str, token: str) -> None:
        self.url, self.sessionid, self.token = url, sessionid, token

    def page(self, path: str) -> tuple[int, str]:
        request = Request(self.url + path, headers={"Cookie": f"sessionid={self.sessionid}"})
        return self._send(request)

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = Request(
            f"{self.url}/api/v1/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        status, text = self._send(request)
        try:
            return status, json.loads(text) if text else {}
        except ValueError:  # an HTML error page: the status tells what went wrong
            return status, {"detail": text[:300]}

    @staticmethod
    def _send(request: Request) -> tuple[int, str]:
        try:
            with urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except HTTPError as exc:
            return exc.code, exc.read().decode()
