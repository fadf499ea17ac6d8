"""Shared fixtures: users, the tiny guest on the real libvirtd, the running stack.

Also the suite's own guards, so that it cannot hide what it did not test:

- at collection, a test that uses a fixture needing Chromium, the real libvirtd or the
  running stack without the matching marker (``browser``, ``libvirt``, ``stack``) is a
  collection error, so ``-m "not browser"`` and friends select what they say;
- while a test runs, one without the ``libvirt`` marker that connects to a real libvirtd
  (any URI but ``test:///``) fails;
- at the end of the session, a skipped or xfailed test that is not in
  ``tests/skips.py`` fails the run.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import uuid as uuidlib
from urllib.parse import urlsplit

import pytest

from panel import hypervisor
from tests.skips import ALLOWED_SKIPS

pytest_plugins = [
    "tests.second_host",
    "tests.tls_host",
    "tests.netns_hosts",
    "tests.stack",
    "tests.browser",
    "tests.sso.oidc_provider",
]

LOCAL_URI = "qemu:///system"
ADMIN_PASSWORD = "admin-pass-9d3k"


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.test", ADMIN_PASSWORD)


@pytest.fixture
def plain_user(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.test", "alice-pass-7Hq2")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def user_client(client, plain_user):
    client.force_login(plain_user)
    return client


GUEST_DIR = "/var/lib/libvirt/boot/panel-test-guest"


def kernel_vm(project, name: str, pool=None, **extra) -> dict:
    """A create request of the tiny guest by direct kernel boot (a small disk in pool)."""
    return {
        "name": name,
        "project": project.pk,
        "vcpus": 1,
        "memory_mib": 96,
        "disks": [{"pool": pool.pk, "size_gib": 0.02, "format": "qcow2"}] if pool else [],
        "networks": [],
        "install": {
            "method": "kernel",
            "kernel": f"{GUEST_DIR}/vmlinuz",
            "initrd": f"{GUEST_DIR}/initrd.img",
            "cmdline": "console=ttyS0",
        },
        "start": True,
        **extra,
    }


def guest_spec(guest, name: str | None = None, **overrides) -> hypervisor.DomainSpec:
    """A DomainSpec that boots the tiny guest by direct kernel boot under TCG."""
    values = {
        "name": name or f"paneltest-{uuidlib.uuid4().hex[:8]}",
        "domain_type": "qemu",
        "memory_mib": 96,
        "vcpus": 1,
        "kernel": guest.kernel,
        "initrd": guest.initrd,
        "cmdline": "console=ttyS0 quiet",
        "vnc": False,
    }
    values.update(overrides)
    return hypervisor.DomainSpec(**values)


@pytest.fixture
def tiny_guest(panel_test_guest):
    """The tiny guest running (transient) on the real local libvirtd; gone afterwards."""
    info = hypervisor.create_transient(LOCAL_URI, guest_spec(panel_test_guest))
    try:
        yield info
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, info.uuid)


def require(command: str, package: str) -> str:
    """The path of a command a test needs; without it the test fails saying what to install
    (a missing package is never a reason to skip: scripts/install.sh installs them)."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"{command} is missing: apt-get install {package} "
            "(scripts/install.sh --test is meant to install it)",
            pytrace=False,
        )
    return path


def wait_for_console_prompt(stream: hypervisor.ConsoleStream, timeout: float = 30.0) -> None:
    """Wait for the guest's shell: its init prints a ready line, then the prompt."""
    stream.read_until(b"panel-test-guest ready", timeout)
    stream.read_until(b"guest# ", timeout)


# --- markers follow from fixtures -------------------------------------------------------------

# A test whose fixture closure (item.fixturenames, so indirect use counts) holds one of
# these fixtures needs the marker. Each name here is defined once in the suite.
MARKER_FIXTURES: dict[str, frozenset[str]] = {
    # tests/browser.py: headless Chromium.
    "browser": frozenset({"browser", "page"}),
    # Real libvirt daemons on this machine (qemu:///system, the second host, the fault
    # tests' private libvirtd) and what they make there.
    "libvirt": frozenset(
        {
            "panel_test_guest",  # the tiny guest, booted on a real libvirtd by its users
            "tiny_guest",
            "define_guest",
            "second_host_uri",  # tests/second_host.py: a second libvirtd
            "tls_host_uri",  # tests/tls_host.py: a libvirtd reached over qemu+tls
            "netns_host_b",  # tests/netns_hosts.py: hosts in network namespaces of their own
            "netns_host_c",
            "fault_host",  # tests/faults/fault_host.py: a private libvirtd
            "main_conn",  # tests/hypervisor/test_second_host.py: libvirt.open(qemu:///system)
            "dir_pool",  # tests/storage/conftest.py: a dir pool made on qemu:///system
            "scratch_pool",  # tests/vms/conftest.py: a dir pool made with virsh
            "pool",  # tests/clones/test_clone.py: a dir pool made with virsh
            "pools",  # tests/migration/conftest.py: dir pools on both hosts
            "backup_pool",  # tests/snapshots/conftest.py, tests/faults: a dir pool
            "lvm_pool",  # tests/storage/test_pool_types.py: a logical pool
            "nets",  # tests/networking/conftest.py: isolated networks on qemu:///system
            "watcher",  # tests/vms/conftest.py, tests/panel/test_watcher.py: domain events
        }
    ),
    # The panel's processes: tests/stack.py (web server, worker, websockify),
    # tests/faults/redis_stack.py (a web server on a private Redis) and the fault tests'
    # private Celery worker, tests/sso/oidc_provider.py (a web server signing in at the
    # test OpenID provider).
    "stack": frozenset({"stack", "redis_stack", "worker_process", "sso_panel"}),
}


_MARKER_PROBLEMS = pytest.StashKey[list[str]]()


def missing_markers(item: pytest.Item) -> list[str]:
    """What the item's fixtures need that its markers do not say, as readable lines."""
    fixtures = set(getattr(item, "fixturenames", ()))
    problems = []
    for marker, needs in MARKER_FIXTURES.items():
        used = sorted(fixtures & needs)
        if used and item.get_closest_marker(marker) is None:
            problems.append(
                f"uses {', '.join(used)} but has no @pytest.mark.{marker} "
                f"(add it to the test or to the module's pytestmark)"
            )
    return problems


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Before -m / -k deselect anything: a test missing a marker is a collection error.
    Tests of SQLite's own locking (``sqlite_only``) are deselected on other databases, and
    tests of PostgreSQL's own features (``postgres_only``) on SQLite."""
    from django.conf import settings

    on_sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
    elsewhere = "postgres_only" if on_sqlite else "sqlite_only"
    other = [item for item in items if item.get_closest_marker(elsewhere)]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if not item.get_closest_marker(elsewhere)]
    for item in items:
        problems = missing_markers(item)
        if problems:
            item.stash[_MARKER_PROBLEMS] = problems
            config.hook.pytest_collectreport(
                report=pytest.CollectReport(
                    item.nodeid,
                    "failed",
                    f"{item.nodeid}: " + "; ".join(problems),
                    None,
                )
            )


def pytest_runtest_setup(item):
    # With --continue-on-collection-errors the test still runs: it fails here.
    problems = item.stash.get(_MARKER_PROBLEMS, None)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


# --- a test without the libvirt marker does not reach a real libvirtd -------------------


def _is_real(uri: str) -> bool:
    return urlsplit(uri).scheme != "test"


@pytest.fixture(autouse=True)
def _libvirt_only_with_its_marker(request, monkeypatch):
    """Fail an unmarked test that got a connection to a real libvirtd (any URI but test:///),
    through the panel's connection pool or libvirt itself, in a fixture or in the test."""
    if request.node.get_closest_marker("libvirt") is not None:
        yield
        return
    import libvirt

    from panel.hypervisor import connection

    reached: set[str] = set()

    def watch(opener):
        def opened(uri, *args, **kwargs):
            conn = opener(uri, *args, **kwargs)
            if uri and _is_real(str(uri)):
                reached.add(str(uri))
            return conn

        return opened

    for name in ("open", "openAuth", "openReadOnly"):
        monkeypatch.setattr(libvirt, name, watch(getattr(libvirt, name)))
    get = connection.ConnectionPool.get

    def pooled(pool, uri, *args, **kwargs):
        conn = get(pool, uri, *args, **kwargs)
        if _is_real(uri):
            reached.add(uri)
        return conn

    monkeypatch.setattr(connection.ConnectionPool, "get", pooled)
    yield
    if reached:
        pytest.fail(
            f"this test reached the real libvirtd at {', '.join(sorted(reached))} "
            "but has no @pytest.mark.libvirt (add it, or use test:///default)",
            pytrace=False,
        )


# --- skips and xfails must be allowed, one by one ---------------------------------------------

# (nodeid, reason) of every skipped or xfailed test of this session not in ALLOWED_SKIPS.
_unallowed_skips: list[tuple[str, str]] = []


def pytest_sessionstart(session):
    _unallowed_skips.clear()


def _skip_reason(report) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    # Skipped in setup or call, xfailed, or xpassed (a non-strict xfail that passed).
    if report.skipped or hasattr(report, "wasxfail"):
        entry = (report.nodeid, _skip_reason(report))
        if entry not in ALLOWED_SKIPS and entry not in _unallowed_skips:
            _unallowed_skips.append(entry)


# A module skipped whole (pytest.skip(allow_module_level=True), importorskip) is a
# collection report; deselection by -m / -k makes no report at all, so it never counts.
pytest_collectreport = pytest_runtest_logreport


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if _unallowed_skips and session.exitstatus in (
        pytest.ExitCode.OK,
        pytest.ExitCode.NO_TESTS_COLLECTED,
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if _unallowed_skips and session.config.pluginmanager.get_plugin("terminalreporter") is None:
        sys.stderr.write(_skips_message() + "\n")


def _skips_message() -> str:
    lines = [
        f"{len(_unallowed_skips)} skipped or xfailed test(s) not allowed in tests/skips.py. "
        "A skip hides a gap: make the test run (for a missing package, pytest.fail saying "
        "what to install), or add it to ALLOWED_SKIPS there with its reason."
    ]
    lines += [f"  {nodeid}  (reason: {reason})" for nodeid, reason in _unallowed_skips]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _unallowed_skips:
        terminalreporter.write_sep("=", "skips not allowed: the run fails", red=True, bold=True)
        terminalreporter.write_line(_skips_message(), red=True)
