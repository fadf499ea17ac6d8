"""A real OpenLDAP server (Debian's slapd) on loopback for the directory sign-on tests.

The session starts its own slapd: a temporary directory with a slapd.conf (mdb backend,
suffix dc=panel,dc=test), loaded with slapadd, listening on ldap://127.0.0.1:<free port>.
A read-only service account is what the panel binds as; the tests change entries as the
directory's root with ldapmodify, as an administrator would. Users carry Active
Directory's userAccountControl (Microsoft's schema ships with slapd), so the active filter
is the one an AD site uses: bit 2 set means disabled.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ldap
import pytest

from tests.conftest import require
from tests.stack import free_port

SUFFIX = "dc=panel,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "Root-of-the-test-directory-1"
SERVICE_DN = f"cn=panel,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "Panel-reads-the-directory-2"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
OPS = f"cn=ops,{GROUPS}"
DEVS = f"cn=devs,{GROUPS}"
AUDITORS = f"cn=auditors,{GROUPS}"
POSIX_OPS = f"cn=ops-posix,{GROUPS}"  # a posixGroup: its members by uid
PLACEHOLDER = f"cn=nobody,{SUFFIX}"  # groupOfNames needs one member
AD_ACTIVE = "(!(userAccountControl:1.2.840.113556.1.4.803:=2))"

# allow bind_anon_dn: the server takes a bind with a DN and no password, as an anonymous
# one (as some directories do), so that the panel's own refusal of it is what is tested.
SLAPD_CONF = """\
allow bind_anon_dn
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/msuser.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
database mdb
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_hash}
directory {dir}/data
maxsize 10485760
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="{service_dn}" read
  by * none
"""


def slappasswd(password: str) -> str:
    return subprocess.run(
        [require("slappasswd", "slapd"), "-s", password],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _base_ldif() -> str:
    groups = "".join(
        f"dn: {dn}\nobjectClass: groupOfNames\ncn: {dn.split(',')[0][3:]}\nmember: {PLACEHOLDER}\n\n"
        for dn in (OPS, DEVS, AUDITORS)
    )
    return (
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Panel tests\n"
        "dc: panel\n\n"
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
        f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n"
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: panel\nuserPassword: {slappasswd(SERVICE_PASSWORD)}\n\n"
        f"dn: {POSIX_OPS}\nobjectClass: posixGroup\ncn: ops-posix\ngidNumber: 5000\n\n" + groups
    )


@dataclass
class Directory:
    """The running slapd, and what an administrator of it does."""

    uri: str
    workdir: Path

    _ids = itertools.count(1)

    def modify(self, ldif: str) -> None:
        subprocess.run(
            [
                require("ldapmodify", "ldap-utils"),
                "-x",
                "-H",
                self.uri,
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PASSWORD,
            ],
            input=ldif,
            check=True,
            capture_output=True,
            text=True,
        )

    def add_user(self, name: str, password: str, *groups: str) -> str:
        """A new person (uid unique to the session: name-N) in groups; their uid."""
        uid = f"{name}-{next(self._ids)}"
        dn = f"uid={uid},{PEOPLE}"
        self.modify(
            f"dn: {dn}\nchangetype: add\nobjectClass: inetOrgPerson\n"
            f"objectClass: extensibleObject\nuid: {uid}\ncn: {name.title()} Tester\n"
            f"givenName: {name.title()}\nsn: Tester\nmail: {uid}@panel.test\n"
            f"userAccountControl: 512\nuserPassword: {slappasswd(password)}\n"
        )
        for group in groups:
            self.add_member(group, uid)
        return uid

    def add_member(self, group: str, uid: str) -> None:
        self.modify(f"dn: {group}\nchangetype: modify\nadd: member\nmember: uid={uid},{PEOPLE}\n")

    def add_posix_member(self, group: str, uid: str) -> None:
        self.modify(f"dn: {group}\nchangetype: modify\nadd: memberUid\nmemberUid: {uid}\n")

    def remove_member(self, group: str, uid: str) -> None:
        self.modify(
            f"dn: {group}\nchangetype: modify\ndelete: member\nmember: uid={uid},{PEOPLE}\n"
        )

    def disable(self, uid: str) -> None:
        """As Active Directory marks a disabled account: userAccountControl bit 2."""
        self.modify(
            f"dn: uid={uid},{PEOPLE}\nchangetype: modify\nreplace: userAccountControl\n"
            "userAccountControl: 514\n"
        )

    def delete(self, uid: str) -> None:
        for group in (OPS, DEVS, AUDITORS):
            try:
                self.remove_member(group, uid)
            except subprocess.CalledProcessError:
                pass  # not a member
        self.modify(f"dn: uid={uid},{PEOPLE}\nchangetype: delete\n")


def _wait_for(uri: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"slapd exited: {log.read_text()[-2000:]}")
        conn = ldap.initialize(uri)
        try:
            conn.simple_bind_s(SERVICE_DN, SERVICE_PASSWORD)
            return
        except ldap.SERVER_DOWN:
            time.sleep(0.1)
        finally:
            conn.unbind_s()
    raise RuntimeError(f"slapd did not answer on {uri}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def slapd(tmp_path_factory) -> Iterator[Directory]:
    binary = shutil.which("slapd") or "/usr/sbin/slapd"
    if not Path(binary).exists():
        require("slapd", "slapd")
    workdir = tmp_path_factory.mktemp("slapd")
    (workdir / "data").mkdir()
    conf = workdir / "slapd.conf"
    conf.write_text(
        SLAPD_CONF.format(
            dir=workdir,
            suffix=SUFFIX,
            root_dn=ROOT_DN,
            root_hash=slappasswd(ROOT_PASSWORD),
            service_dn=SERVICE_DN,
        )
    )
    (workdir / "base.ldif").write_text(_base_ldif())
    subprocess.run(
        ["/usr/sbin/slapadd", "-f", str(conf), "-l", str(workdir / "base.ldif")],
        check=True,
        capture_output=True,
    )
    uri = f"ldap://127.0.0.1:{free_port()}"
    log = workdir / "slapd.log"
    with log.open("w") as out:
        # -d 0: stays in the foreground (the fixture owns it), logs nothing but errors.
        proc = subprocess.Popen(
            [binary, "-f", str(conf), "-h", f"{uri}/", "-d", "0"], stdout=out, stderr=out
        )
    try:
        _wait_for(uri, proc, log)
        yield Directory(uri=uri, workdir=workdir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def directory(slapd, settings) -> Directory:
    """The panel configured for the test directory, as the README's settings do it."""
    settings.PANEL_LDAP_URI = slapd.uri
    settings.PANEL_LDAP_BIND_DN = SERVICE_DN
    settings.PANEL_LDAP_BIND_PASSWORD = SERVICE_PASSWORD
    settings.PANEL_LDAP_USER_BASE = PEOPLE
    settings.PANEL_LDAP_USER_FILTER = "(uid=%(user)s)"
    settings.PANEL_LDAP_GROUP_BASE = GROUPS
    settings.PANEL_LDAP_GROUP_TYPE = "groupOfNames"
    settings.PANEL_LDAP_ACTIVE_FILTER = AD_ACTIVE
    settings.PANEL_LDAP_TIMEOUT = 5
    settings.AUTHENTICATION_BACKENDS = [
        "panel.identity.ldap.DirectoryBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    return slapd
