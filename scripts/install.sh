#!/usr/bin/env bash
# Installs what the panel needs on Debian/Ubuntu and starts the system services
# it talks to. Safe to run again: each step does only what is missing.
#   scripts/install.sh                    everything for running the panel (SQLite)
#   PANEL_DB=postgres scripts/install.sh  the same on this machine's PostgreSQL
#   scripts/install.sh --test             the same plus what the tests need (the
#                                         browser, PostgreSQL, the dev packages)
# PANEL_VENV chooses the virtualenv (default .venv), PANEL_VAR_DIR the data folder.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1
PYTHON=${PYTHON:-python3}
VENV=${PANEL_VENV:-.venv}
DB=${PANEL_DB:-sqlite}
case "$DB" in
  sqlite | postgres) ;;
  *) echo "install: PANEL_DB is '$DB'; use sqlite (the default) or postgres." >&2; exit 2 ;;
esac
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install: run as root (or install sudo): system packages and libvirtd need it." >&2
    exit 1
  fi
fi

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. System packages.
packages=(
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  qemu-system-x86 qemu-utils ovmf dnsmasq-base
  redis-server
  gcc python3-dev python3-venv
  libldap2-dev libsasl2-dev
  busybox-static cpio iproute2 procps util-linux lvm2
  openssh-client
  osinfo-db xorriso genisoimage
)
# slapd, ldap-utils: the directory the LDAP tests start on loopback; openssh-server: the
# sshd of the test hosts in network namespaces (scripts/netns-host.sh).
[ "$WITH_TEST" = 1 ] && packages+=(chromium fonts-dejavu-core slapd ldap-utils openssh-server)
[ "$WITH_TEST" = 1 ] || [ "$DB" = postgres ] && packages+=(postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing system packages: ${missing[*]}"
  # slapd's package starts a system directory listening on every address; the tests
  # start their own on loopback. Where nothing keeps services from starting at install
  # (invoke-rc.d's policy), this install does, and leaves the system's slapd stopped.
  no_start=0
  if [[ " ${missing[*]} " == *" slapd "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    no_start=1
  fi
  if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
    # Installed for the test hosts only: the package's own sshd must not start on this
    # machine (its init script and its systemd unit both honour this file).
    $SUDO mkdir -p /etc/ssh
    $SUDO touch /etc/ssh/sshd_not_to_be_run
  fi
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ "$no_start" = 1 ]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
    if [ -d /run/systemd/system ]; then $SUDO systemctl disable --now slapd >/dev/null 2>&1 || true; fi
  fi
fi

# 2. /dev/kvm as udev would leave it: group kvm, rw for the group. Without
# this, libvirt re-probes qemu on every call (tens of seconds each).
if [ -e /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" != "kvm:660" ] && getent group kvm >/dev/null; then
  say "Giving group kvm access to /dev/kvm"
  $SUDO chgrp kvm /dev/kvm && $SUDO chmod 660 /dev/kvm
fi

# 3. Services: systemd where it runs, else the daemons directly.
if [ -d /run/systemd/system ]; then
  # Not redis-server: the panel runs its own, with a password (scripts/redis.sh, from
  # scripts/run.sh); the system's service, if any, is left as it is.
  $SUDO systemctl start virtlogd libvirtd
else
  # The host's own daemons, by their pid files and ports: other instances (the
  # second libvirtd of the migration tests, a test's private Redis) do not count.
  alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
  alive /run/virtlogd.pid || { say "Starting virtlogd"; $SUDO virtlogd -d; }
  if ! virsh -c qemu:///system uri >/dev/null 2>&1 && ! alive /run/libvirtd.pid; then
    say "Starting libvirtd"
    $SUDO libvirtd -d
  fi
  # redis-server: the panel starts its own, with a password (scripts/redis.sh).
fi
for _ in $(seq 1 50); do
  virsh -c qemu:///system uri >/dev/null 2>&1 && break
  sleep 0.2
done
virsh -c qemu:///system uri >/dev/null || { echo "install: libvirtd does not answer on qemu:///system" >&2; exit 1; }

# 4. Python environment from the hash-locked requirements (make lock writes them),
# reinstalled only when the lock changes.
lock=requirements.txt
[ "$WITH_TEST" = 1 ] && lock=requirements-dev.txt
if [ ! -x "$VENV/bin/python" ]; then
  say "Creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat "$lock" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  say "Installing Python packages from $lock"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q --require-hashes -r "$lock"
  "$VENV/bin/pip" check
  touch "$stamp"
fi

# 5. The tiny guest: the KVM check boots it, the tests run it.
scripts/build-test-guest.sh

# 6. Database and static files.
if [ "$WITH_TEST" = 1 ] || [ "$DB" = postgres ]; then
  scripts/postgres.sh
fi
if [ "$DB" = postgres ] && [ -z "${DATABASE_URL:-}" ]; then
  set -a
  # shellcheck disable=SC1091 # written by scripts/postgres.sh
  . "${PANEL_VAR_DIR:-var}/postgres.env"
  set +a
fi
"$VENV/bin/python" manage.py migrate --noinput -v0
"$VENV/bin/python" manage.py collectstatic --noinput -v0
say "Installed."
