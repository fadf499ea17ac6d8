"""Attack: use the panel's Redis from anywhere on the machine.

Redis carries the Celery queue, the channel layer, the cache, the login counters and
the console tickets. Without a password, any local user or process (a compromised
service, a guest agent's helper, another tenant's shell on the same machine) can read
and write all of it: queue tasks, forge events, clear the login throttle, take tickets.

What the panel does: scripts/redis.sh starts the panel's own Redis, on 127.0.0.1 only,
with a password generated once and kept in var/ with mode 600 (the configuration and
the REDIS_URL file too), and never uses a Redis without a password: one already on the
port (Debian's service on 6379, say) is left untouched and the script asks for another
PANEL_REDIS_PORT. scripts/run.sh, scripts/test.sh and scripts/check-run.sh take the URL
from var/redis.env; docker-compose gives its Redis --requirepass.

Each test runs the script on a temporary var folder and a free port.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.stack import REPO_ROOT, free_port

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(120)]

SCRIPT = REPO_ROOT / "scripts" / "redis.sh"


def run_script(var_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PANEL_VAR_DIR": str(var_dir),
        "PANEL_REDIS_DIR": str(var_dir / "redis"),
        "PANEL_REDIS_PORT": str(port),
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def env_url(var_dir: Path) -> str:
    line = (var_dir / "redis.env").read_text().strip()
    assert line.startswith("REDIS_URL="), line
    return line.removeprefix("REDIS_URL=")


@pytest.fixture
def panel_redis(tmp_path) -> Iterator[tuple[Path, int]]:
    """The script run on a var folder of the test's and a free port: (var, port). The
    instance it started is shut down at the end."""
    var_dir, port = tmp_path / "var", free_port()
    result = run_script(var_dir, port)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield var_dir, port
    finally:
        client = redis.Redis.from_url(env_url(var_dir))
        try:
            client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # it closes the connection as it goes


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_it_refuses_a_client_without_the_password(panel_redis):
    var_dir, port = panel_redis

    stranger = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.AuthenticationError):
        stranger.ping()
    with pytest.raises(redis.AuthenticationError):
        stranger.set("panel:console:forged", "x")
    wrong = redis.Redis(host="127.0.0.1", port=port, password="guessed")
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()

    panel = redis.Redis.from_url(env_url(var_dir))
    assert panel.ping()
    assert panel.config_get("bind")["bind"] == "127.0.0.1"
    assert panel.config_get("protected-mode")["protected-mode"] == "yes"
    password = (var_dir / "redis" / "redis.password").read_text().strip()
    assert len(password) >= 32 and password in env_url(var_dir)
    for path in (
        var_dir / "redis/redis.password",
        var_dir / "redis.env",
        var_dir / "redis/redis.conf",
    ):
        assert mode(path) == 0o600, path


def test_it_keeps_its_password_and_instance_when_run_again(panel_redis):
    var_dir, port = panel_redis
    password = (var_dir / "redis" / "redis.password").read_text()
    pid = redis.Redis.from_url(env_url(var_dir)).info("server")["process_id"]

    again = run_script(var_dir, port)

    assert again.returncode == 0, again.stderr
    assert (var_dir / "redis" / "redis.password").read_text() == password
    assert redis.Redis.from_url(env_url(var_dir)).info("server")["process_id"] == pid


def test_it_leaves_a_redis_without_password_alone_and_does_not_use_it(tmp_path):
    port = free_port()
    other = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

        result = run_script(tmp_path / "var", port)

        assert result.returncode != 0
        assert f"a Redis without a password already listens on 127.0.0.1:{port}" in result.stderr
        assert "PANEL_REDIS_PORT" in result.stderr
        assert client.config_get("requirepass")["requirepass"] == ""
        assert not (tmp_path / "var" / "redis.env").exists()
    finally:
        other.terminate()
        other.wait(10)
