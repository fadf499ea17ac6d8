"""cloud-init NoCloud seeds: check user-data, meta-data and network-config, and build the ISO.

Like `cloud-localds`: the guest finds an ISO 9660 disk labelled CIDATA whose
files `user-data`, `meta-data` and (optionally) `network-config` configure its
first boot. Every check names the line that is wrong, so a user can fix a
long cloud-config without guessing.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
from collections.abc import Sequence
from typing import Any

import pycdlib
import yaml
from passlib.hash import sha512_crypt

from panel.exceptions import ServiceError

CLOUD_CONFIG_HEADER = "#cloud-config"
VOLUME_ID = "CIDATA"
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z", re.IGNORECASE)
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
SSH_KEY = re.compile(r"^(\S+) ([A-Za-z0-9+/]+={0,3})(?: .*)?\Z")

# Seed file name -> its ISO 9660 level-1 name (8.3, upper case). Guests read
# the Rock Ridge or Joliet name; the short one only has to be unique.
SEED_FILES = {
    "user-data": "/USERDATA.;1",
    "meta-data": "/METADATA.;1",
    "network-config": "/NETWORKC.;1",
}


def validate_user_data(text: str) -> None:
    """Refuse user-data that is neither a #cloud-config mapping nor a `#!` script."""
    if text.startswith("#!"):
        return
    first_line = text.split("\n", 1)[0].rstrip()
    if first_line != CLOUD_CONFIG_HEADER:
        raise ServiceError(
            "user-data must start with the line #cloud-config (a YAML cloud-config) "
            "or with #! (a script to run on first boot). Add #cloud-config as the first line.",
            field="user_data",
        )
    validate_yaml(text, "user_data", "user-data")


def validate_yaml(text: str, field: str, what: str) -> dict[str, Any]:
    """Parse `text` as one YAML mapping; refuse it naming the line yaml complains about."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "is not valid YAML"
        # An unclosed bracket or quote is reported where the text ends; the
        # context says where it was opened.
        if exc.problem and exc.context and exc.context_mark and exc.context_mark != mark:
            problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise ServiceError(
            f"{what}{where}: {problem}. Fix the YAML and submit again.", field=field
        ) from exc
    except yaml.YAMLError as exc:
        raise ServiceError(f"{what}: {exc}. Fix the YAML and submit again.", field=field) from exc
    if not isinstance(data, dict):
        found = "nothing" if data is None else f"a {type(data).__name__}"
        raise ServiceError(
            f"{what} must be a YAML mapping of `key: value` lines, but it holds {found}. "
            "Write it as keys and values, for example `hostname: web1`.",
            field=field,
        )
    return data


def validate_meta_data(text: str) -> None:
    """Refuse meta-data that is not a YAML mapping."""
    validate_yaml(text, "meta_data", "meta-data")


def validate_network_config(text: str) -> None:
    """Refuse network-config that is not a YAML mapping with `version: 1` or `version: 2`."""
    data = validate_yaml(text, "network_config", "network-config")
    if data.get("version") not in (1, 2):
        raise ServiceError(
            "network-config needs `version: 1` or `version: 2` at the top level "
            f"(found {data.get('version')!r}). Add the version line, usually `version: 2`.",
            field="network_config",
        )


def simple_user_data(
    *, user: str, password: str | None, ssh_keys: Sequence[str], hostname: str
) -> str:
    """A #cloud-config that creates one sudo user with a hashed password and/or SSH keys."""
    if not USER_NAME.match(user):
        raise ServiceError(
            f'"{user}" is not a valid user name. Use up to 32 lower-case letters, digits, '
            "_ or -, starting with a letter or _.",
            field="user",
        )
    validate_hostname(hostname)
    keys = [key.strip() for key in ssh_keys if key.strip()]
    for number, key in enumerate(keys, start=1):
        validate_ssh_key(key, number)
    if not password and not keys:
        raise ServiceError(
            "Give a password or at least one SSH key, otherwise nobody can log in to the VM.",
            field="password",
        )
    account: dict[str, Any] = {
        "name": user,
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "shell": "/bin/bash",
        "lock_passwd": not password,
    }
    if password:
        account["passwd"] = hash_password(password)
    if keys:
        account["ssh_authorized_keys"] = keys
    config = {
        "hostname": hostname,
        "users": [account],
        "ssh_pwauth": bool(password),
    }
    text = f"{CLOUD_CONFIG_HEADER}\n" + yaml.safe_dump(config, sort_keys=False)
    validate_user_data(text)
    return text


def validate_hostname(hostname: str) -> None:
    """Refuse a host name that is not dot-separated labels of letters, digits and hyphens."""
    labels = hostname.split(".")
    if len(hostname) > 253 or not all(HOST_LABEL.match(label) for label in labels):
        raise ServiceError(
            f'"{hostname}" is not a valid host name. Use letters, digits and hyphens '
            "(not at the start or end), with dots between parts, for example web-1.",
            field="hostname",
        )


def validate_ssh_key(key: str, number: int = 1) -> None:
    """Refuse a line that is not `<type> <base64 key> [comment]` with a matching key type."""
    shown = key if len(key) <= 40 else key[:37] + "..."
    match = SSH_KEY.match(key)
    problem = None
    if match is None:
        problem = "is not of the form `<type> <key> [comment]`"
    elif match.group(1) not in SSH_KEY_TYPES:
        problem = f'has the unknown type "{match.group(1)}"'
    else:
        try:
            blob = base64.b64decode(match.group(2), validate=True)
        except binascii.Error:
            blob = b""
        # The key blob starts with its own type name, length-prefixed: a key
        # cut short or pasted with the wrong type fails here.
        (length,) = struct.unpack(">I", blob[:4]) if len(blob) >= 4 else (0,)
        if blob[4 : 4 + length].decode("ascii", "replace") != match.group(1):
            problem = "has a damaged or truncated key part"
    if problem:
        raise ServiceError(
            f'SSH key {number} ("{shown}") {problem}. Paste the whole line of your '
            ".pub file, e.g. ~/.ssh/id_ed25519.pub.",
            field="ssh_keys",
        )


def hash_password(password: str) -> str:
    """SHA-512 crypt hash (`$6$<salt>$...`, glibc's default 5,000 rounds) as /etc/shadow and
    cloud-init's `passwd` expect."""
    return sha512_crypt.using(rounds=5000).hash(password)


def default_meta_data(instance_id: str, hostname: str) -> str:
    """meta-data naming the instance (cloud-init reruns first boot when it changes)."""
    return yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname}, sort_keys=False)


def build_seed_iso(user_data: str, meta_data: str, network_config: str | None = None) -> bytes:
    """The NoCloud seed ISO: volume CIDATA holding user-data, meta-data and network-config."""
    files = {"user-data": user_data, "meta-data": meta_data}
    if network_config is not None:
        files["network-config"] = network_config
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=VOLUME_ID, joliet=3, rock_ridge="1.09")
    for name, text in files.items():
        data = text.encode()
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            iso_path=SEED_FILES[name],
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_seed_iso(data: bytes) -> dict[str, str]:
    """The files of a seed ISO by their Rock Ridge (else Joliet) names."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        facade = iso.get_rock_ridge_facade() if iso.has_rock_ridge() else iso.get_joliet_facade()
        files = {}
        for directory, _, names in facade.walk("/"):
            for name in names:
                path = f"{directory.rstrip('/')}/{name}"
                out = io.BytesIO()
                facade.get_file_from_iso_fp(out, path)
                files[path.lstrip("/")] = out.getvalue().decode()
        return files
    finally:
        iso.close()
