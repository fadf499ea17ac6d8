"""What every benchmark does before importing the panel: its own temporary database,
var directory and Redis db, so it never touches the developer's data; and loopback helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent


def isolated_django(prefix: str) -> Path:
    """Point the panel at a fresh temporary directory, set Django up, return the directory."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    use_bench_redis()
    os.environ["DATABASE_URL"] = f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ["PANEL_VAR_DIR"] = str(work)
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
    import django

    django.setup()
    return work


def use_bench_redis() -> None:
    """REDIS_URL as given, else database 13 of the panel's own Redis (scripts/redis.sh,
    started if need be)."""
    if not os.environ.get("REDIS_URL"):
        done = subprocess.run(
            [str(REPO / "scripts" / "redis.sh"), "--url", "13"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines or not lines[-1].startswith("redis://"):
            raise SystemExit(f"no Redis: set REDIS_URL (scripts/redis.sh: {done.stderr[-500:]})")
        os.environ["REDIS_URL"] = lines[-1]


def bench_environment(tmp: Path) -> None:
    """Point the panel (this process and the servers it starts) at tmp and a Redis db of
    the benchmarks' own, quietly logged, from the repository root; Django not set up yet."""
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ["PANEL_VAR_DIR"] = str(tmp / "var")
    os.environ["PANEL_STATIC_ROOT"] = str(tmp / "staticfiles")
    use_bench_redis()
    os.environ["PANEL_CHANNEL_PREFIX"] = f"bench-{os.getpid()}"
    os.environ.setdefault("PANEL_LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "panel.settings"
    os.environ.pop("PANEL_DEBUG", None)
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)


def migrate_and_collect_static() -> None:
    """The schema, and the static files manifest the pages need (without whitenoise's
    compressed copies, which take most of collectstatic's time); Django set up."""
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    call_command("migrate", verbosity=0, interactive=False)
    storages = dict(settings.STORAGES)
    storages["staticfiles"] = {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    }
    with override_settings(STORAGES=storages):
        call_command("collectstatic", verbosity=0, interactive=False)


# The web server's options in production (scripts/supervisord.conf), whatever socket it
# listens on.
WEB_SERVER_OPTIONS = (
    "--lifespan",
    "off",
    "--no-proxy-headers",
    "--ws-max-size",
    "2097152",
    "--timeout-graceful-shutdown",
    "5",
)


def web_server(port: int, workers: int = 1) -> list[str]:
    """The web server command of scripts/run.sh on 127.0.0.1:port, with workers processes."""
    return [
        str(Path(sys.executable).parent / "uvicorn"),
        "panel.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *WEB_SERVER_OPTIONS,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def make_session(user) -> str:  # type: ignore[no-untyped-def]
    """A logged-in session for user, as django.contrib.auth.login would store it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key  # type: ignore[return-value]


# --- a scratch PostgreSQL database -----------------------------------------------------


def postgres_url() -> str:
    """The PostgreSQL server to use, as a URL (its database part is replaced)."""
    if url := os.environ.get("PANEL_BENCH_POSTGRES_URL"):
        return url
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return os.environ["DATABASE_URL"]
    env = Path(os.environ.get("PANEL_VAR_DIR", REPO / "var")) / "postgres.env"
    if env.exists():
        for line in env.read_text().splitlines():
            if line.startswith("DATABASE_URL="):
                return line.split("=", 1)[1].strip()
    raise SystemExit(
        "PostgreSQL: run scripts/postgres.sh once (it writes var/postgres.env), "
        "or set PANEL_BENCH_POSTGRES_URL=postgres://user@host:port/any"
    )


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def admin_sql(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]
