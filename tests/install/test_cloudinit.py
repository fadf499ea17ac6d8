"""cloud-init NoCloud seeds: the ISO a guest reads, and the checks on what users type."""

from __future__ import annotations

import io
import subprocess

import pycdlib
import pytest

from panel.exceptions import ServiceError
from tests.conftest import require
from vms.install import cloudinit

USER_DATA = "#cloud-config\npackages:\n  - nginx\nruncmd:\n  - [systemctl, enable, --now, nginx]\n"
META_DATA = "instance-id: vm-42\nlocal-hostname: web1\n"
NETWORK_CONFIG = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"
ED25519_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICxioU5wFs9IB81itCZLlEGzercWnZK/VduDegrliWhj alice@laptop"
)


@pytest.fixture
def seed_iso(tmp_path):
    path = tmp_path / "seed.iso"
    path.write_bytes(cloudinit.build_seed_iso(USER_DATA, META_DATA, NETWORK_CONFIG))
    return path


def test_it_reads_back_the_seed_files_unchanged(seed_iso):
    assert cloudinit.read_seed_iso(seed_iso.read_bytes()) == {
        "user-data": USER_DATA,
        "meta-data": META_DATA,
        "network-config": NETWORK_CONFIG,
    }


def test_it_leaves_out_network_config_when_none_is_given():
    iso = cloudinit.build_seed_iso(USER_DATA, META_DATA)
    assert sorted(cloudinit.read_seed_iso(iso)) == ["meta-data", "user-data"]


def test_it_labels_the_seed_cidata(seed_iso):
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(seed_iso.read_bytes()))
    assert iso.pvd.volume_identifier.rstrip(b" ") == b"CIDATA"
    iso.close()


def test_it_shows_cidata_to_isoinfo(seed_iso):
    isoinfo = require("isoinfo", "genisoimage")
    info = subprocess.run([isoinfo, "-d", "-i", str(seed_iso)], capture_output=True, text=True)
    assert "Volume id: CIDATA" in info.stdout


def test_it_gives_xorriso_the_exact_file_names_and_contents(seed_iso, tmp_path):
    xorriso = require("xorriso", "xorriso")
    out = tmp_path / "extracted"
    subprocess.run(
        [xorriso, "-indev", str(seed_iso), "-osirrox", "on", "-extract", "/", str(out)],
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in out.iterdir()) == ["meta-data", "network-config", "user-data"]
    assert (out / "user-data").read_text() == USER_DATA
    assert (out / "meta-data").read_text() == META_DATA
    assert (out / "network-config").read_text() == NETWORK_CONFIG


@pytest.mark.parametrize(
    "text",
    [
        "#cloud-config\npackages:\n\t- nginx\n",  # a tab on line 3
        "#cloud-config\nhostname: web1\n  fqdn: web1.example.test\n",  # bad indent on line 3
    ],
)
def test_it_names_the_line_of_bad_yaml(text):
    with pytest.raises(ServiceError) as exc:
        cloudinit.validate_user_data(text)
    assert "user-data line 3:" in exc.value.message
    assert "Fix the YAML" in exc.value.message
    assert exc.value.field == "user_data"


def test_it_asks_for_the_cloud_config_header():
    with pytest.raises(ServiceError, match="#cloud-config as the first line") as exc:
        cloudinit.validate_user_data("packages:\n  - nginx\n")
    assert exc.value.field == "user_data"


def test_it_refuses_cloud_config_that_is_not_a_mapping():
    with pytest.raises(ServiceError, match="holds a list"):
        cloudinit.validate_user_data("#cloud-config\n- nginx\n")


def test_it_accepts_a_script_as_user_data():
    cloudinit.validate_user_data("#!/bin/sh\necho hello > /tmp/hello\n")


def test_it_checks_network_config_version():
    cloudinit.validate_network_config(NETWORK_CONFIG)
    with pytest.raises(ServiceError, match="version: 2") as exc:
        cloudinit.validate_network_config("ethernets:\n  eth0:\n    dhcp4: true\n")
    assert exc.value.field == "network_config"


def test_it_names_the_line_of_bad_meta_data():
    with pytest.raises(ServiceError) as exc:
        cloudinit.validate_meta_data("instance-id: a\nlocal-hostname: [web1\n")
    assert exc.value.message.startswith("meta-data line 3: expected ',' or ']'")
    assert "on line 2)" in exc.value.message
    assert exc.value.field == "meta_data"


def test_it_writes_a_simple_user_with_a_hashed_password_and_keys():
    text = cloudinit.simple_user_data(
        user="alice", password="s3cret-Pass", ssh_keys=[ED25519_KEY, ""], hostname="web1"
    )
    cloudinit.validate_user_data(text)
    assert "s3cret-Pass" not in text
    config = cloudinit.validate_yaml(text, "user_data", "user-data")
    (account,) = config["users"]
    assert account["name"] == "alice"
    assert account["passwd"].startswith("$6$")
    assert account["ssh_authorized_keys"] == [ED25519_KEY]
    assert account["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert account["lock_passwd"] is False
    assert config["ssh_pwauth"] is True
    assert config["hostname"] == "web1"


def test_it_hashes_a_password_the_system_can_verify():
    hashed = cloudinit.hash_password("s3cret-Pass")
    salt = hashed.rsplit("$", 1)[0].split("$")[2]
    again = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input="s3cret-Pass",
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stdout.strip() == hashed


def test_it_turns_off_password_login_without_a_password():
    text = cloudinit.simple_user_data(
        user="alice", password=None, ssh_keys=[ED25519_KEY], hostname="web1"
    )
    config = cloudinit.validate_yaml(text, "user_data", "user-data")
    assert config["ssh_pwauth"] is False
    assert "passwd" not in config["users"][0]


@pytest.mark.parametrize(
    "bad_key",
    [
        "ssh-ed25519",
        "ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAICxioU5wFs9IB81itCZLlEGzercWnZK/VduDegrliWhj",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAICxioU5wFs9IB81itCZLlEGzercWnZK/VduDegrliWhj",
        "ssh-ed25519 not!base64",
    ],
)
def test_it_refuses_a_bad_ssh_key_naming_it(bad_key):
    with pytest.raises(ServiceError) as exc:
        cloudinit.simple_user_data(
            user="alice", password="pw", ssh_keys=[ED25519_KEY, bad_key], hostname="web1"
        )
    assert exc.value.field == "ssh_keys"
    assert exc.value.message.startswith(f'SSH key 2 ("{bad_key[:20]}')


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"user": "Root User"}, "user"),
        ({"hostname": "web_1"}, "hostname"),
        ({"password": "", "ssh_keys": []}, "password"),
    ],
)
def test_it_refuses_bad_simple_fields(fields, field):
    values = {"user": "alice", "password": "pw", "ssh_keys": [], "hostname": "web1"} | fields
    with pytest.raises(ServiceError) as exc:
        cloudinit.simple_user_data(**values)
    assert exc.value.field == field


def test_it_writes_meta_data_with_the_instance_id():
    text = cloudinit.default_meta_data("vm-42", "web1")
    cloudinit.validate_meta_data(text)
    assert cloudinit.validate_yaml(text, "meta_data", "meta-data") == {
        "instance-id": "vm-42",
        "local-hostname": "web1",
    }
