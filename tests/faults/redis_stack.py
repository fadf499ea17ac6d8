"""A private Redis and a web server that uses it, for tests that stop and start Redis.

The machine's Redis (and the shared ``stack``) are never touched: this Redis
listens on a free loopback port, keeps nothing on disk, and is stopped with
the web server when the test ends, whatever happened.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.stack import free_port, process_env, spawn, stop_process, wait_for_web, web_server


@dataclass
class PrivateRedis:
    """redis-server on 127.0.0.1:port; stop() and start() keep the port."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is missing (apt-get install redis-server)"
        self.proc = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=open(self.log, "ab"),  # noqa: SIM115 - the child holds it
            stderr=subprocess.STDOUT,
        )
        assert self._wait(up=True), f"redis-server did not start:\n{self.log.read_text()}"

    def stop(self) -> None:
        """SIGKILL, as a crash would: nothing is saved, clients are cut off."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        assert self._wait(up=False)

    def _wait(self, up: bool, timeout: float = 10) -> bool:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    answered = s.recv(16).startswith(b"+PONG")
            except OSError:
                answered = False
            if answered == up:
                return True
            time.sleep(0.05)
        return False


@dataclass(frozen=True)
class RedisStack:
    url: str
    ws_url: str
    redis: PrivateRedis


@pytest.fixture
def redis_stack(django_db_setup, tmp_path) -> Iterator[RedisStack]:
    """The web server on a free port whose cache, channel layer and broker are a private Redis."""
    redis = PrivateRedis(port=free_port(), log=tmp_path / "redis.log")
    redis.start()
    port = free_port()
    env = process_env() | {"REDIS_URL": redis.url, "PANEL_CHANNEL_PREFIX": f"fault-{port}"}
    web = spawn(web_server(port), tmp_path / "web.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_web(url, web, tmp_path / "web.log")
        yield RedisStack(url=url, ws_url=f"ws://127.0.0.1:{port}", redis=redis)
    finally:
        stop_process(web)
        redis.stop()
