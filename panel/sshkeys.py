"""The panel's SSH key pair and the host keys it pins for qemu+ssh hosts: reading a
host's key without logging in (ssh-keyscan), its SHA256 fingerprint as ssh shows it,
and the per-host known_hosts file libvirt checks the host against."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from panel import hypervisor

# The host key types the panel pins, the one it prefers first.
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "ssh-rsa")
SCAN_TIMEOUT = 5


class SSHKeyError(Exception):
    """The host key could not be read, or the panel's key could not be made."""


@dataclass(frozen=True)
class HostKey:
    key_type: str
    blob: str  # base64, as in known_hosts

    @property
    def line(self) -> str:
        return f"{self.key_type} {self.blob}"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.line)


def fingerprint(key_line: str) -> str:
    """SHA256:... of a "type base64" key, as ssh-keygen -l prints it ('' for no key)."""
    parts = (key_line or "").split()
    if len(parts) < 2:
        return ""
    digest = hashlib.sha256(base64.b64decode(parts[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def panel_public_key() -> str:
    """The panel's public key as an authorized_keys line; the key pair is made on first need."""
    private = hypervisor.panel_key_path()
    public = private.with_name(private.name + ".pub")
    if not private.exists():
        private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=private.parent) as tmp:
            made = Path(tmp) / "key"
            result = subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kvm-panel", "-f", str(made)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if result.returncode != 0:
                raise SSHKeyError(f"ssh-keygen failed: {result.stderr.strip()}")
            os.chmod(made, 0o600)
            # The public key first: whoever sees the private key finds its pair there.
            with contextlib.suppress(FileExistsError):
                os.link(made.with_suffix(".pub"), public)
            with contextlib.suppress(FileExistsError):
                os.link(made, private)  # another process made one meanwhile: keep theirs
    return public.read_text().strip()


def _host_and_port(uri: str) -> tuple[str, int]:
    parts = urlsplit(uri)
    if not parts.hostname:
        raise SSHKeyError(f"{uri} names no host to reach over SSH.")
    return parts.hostname, parts.port or 22


def scan(uri: str) -> HostKey:
    """The host key the SSH server of uri's host offers now (no login)."""
    host, port = _host_and_port(uri)
    result = subprocess.run(
        ["ssh-keyscan", "-T", str(SCAN_TIMEOUT), "-p", str(port), "-t", "ed25519,ecdsa,rsa", host],
        capture_output=True,
        text=True,
        timeout=SCAN_TIMEOUT * 4,
        check=False,
    )
    offered = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and not line.startswith("#"):
            offered[fields[1]] = fields[2]
    for key_type in KEY_TYPES:
        if key_type in offered:
            return HostKey(key_type, offered[key_type])
    raise SSHKeyError(
        f"No SSH server answered on {host} port {port} within {SCAN_TIMEOUT} s. Check the "
        "address and that sshd runs there and lets this server through its firewall."
    )


def write_known_hosts(uri: str, key_line: str) -> None:
    """Make key_line the only key libvirt accepts for uri's host."""
    host, port = _host_and_port(uri)
    name = host if port == 22 else f"[{host}]:{port}"
    path = hypervisor.known_hosts_path(uri)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{name} {key_line}\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def forget_known_hosts(uri: str) -> None:
    """No key pinned for uri's host any more: libvirt will not contact it."""
    hypervisor.known_hosts_path(uri).unlink(missing_ok=True)


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ssh_command(
    uri: str, options: list[str], remote: str, *, what: str, connect_timeout: int = SCAN_TIMEOUT
) -> list[str]:
    """The ssh command running remote on uri's host with the panel's key, trusting the
    host's pinned key only (no agent, no user configuration); SSHKeyError (saying what
    is not done) when no key is pinned."""
    known_hosts = hypervisor.known_hosts_path(uri)
    if not known_hosts.is_file():
        raise SSHKeyError(f"The SSH host key of {uri} is not confirmed: {what}.")
    host, port = _host_and_port(uri)
    user = urlsplit(uri).username or "root"
    return [
        "ssh", "-F", "/dev/null", "-T",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"ConnectTimeout={int(connect_timeout)}",
        "-i", str(hypervisor.panel_key_path()),
        *options,
        "-p", str(port), "-l", user, "--", host,
        remote,
    ]  # fmt: skip


@dataclass(frozen=True)
class RemoteResult:
    """What a command run over SSH ended with: returncode 255 or None (timed out) when
    the host could not be reached."""

    returncode: int | None
    output: str

    @property
    def reached(self) -> bool:
        return self.returncode not in (None, 255)


def run_remote(uri: str, remote: str, *, timeout: float) -> RemoteResult:
    """Run the shell command remote on uri's host over SSH (see ssh_command), waiting at
    most timeout seconds."""
    command = ssh_command(
        uri, [], remote, what="nothing is run there", connect_timeout=max(1, int(timeout))
    )
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return RemoteResult(None, f"no answer within {timeout:g} s")
    return RemoteResult(result.returncode, (result.stderr or result.stdout).strip()[-500:])


def open_tunnel(uri: str, remote_address: str, remote_port: int, hold_seconds: int) -> int:
    """A local TCP forward 127.0.0.1:<port> -> remote_address:remote_port as seen from
    uri's host, through ssh with the panel's key and the host's pinned key only, as
    virt-manager reaches the VNC displays of qemu+ssh hosts. It takes connections for
    hold_seconds, then closes once the last connection through it closed; returns <port>."""
    local = _free_local_port()
    command = ssh_command(
        uri,
        [
            "-f",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            f"127.0.0.1:{local}:{remote_address}:{int(remote_port)}",
        ],
        f"sleep {int(hold_seconds)}",
        what="no tunnel is opened",
    )
    host, _ = _host_and_port(uri)
    with tempfile.TemporaryFile() as errors:
        # -f: ssh goes to the background once the forward listens; its output must not
        # be a pipe, which the background ssh would hold open.
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            timeout=SCAN_TIMEOUT * 4,
            check=False,
        )
        if result.returncode != 0:
            errors.seek(0)
            text = errors.read().decode(errors="replace").strip()
            raise SSHKeyError(f"The SSH tunnel to {host} failed: {text}")
    return local
