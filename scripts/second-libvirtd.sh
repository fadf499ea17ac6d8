#!/usr/bin/env bash
# A second libvirtd on this machine, for multi-host and live-migration tests.
#
#   second-libvirtd.sh start [PORT] [--tls TLS_PORT PKI_DIR [--allowed-dn DN]]
#                                     start it (default port 16519), print its URI;
#                                     with --tls it also listens for qemu+tls on
#                                     127.0.0.1:TLS_PORT with the CA, certificate
#                                     and key in PKI_DIR (cacert.pem,
#                                     servercert.pem, serverkey.pem), asks every
#                                     client for a certificate signed by that CA
#                                     and, with --allowed-dn, admits only clients
#                                     whose certificate's DN matches DN (a
#                                     tls_allowed_dn_list wildcard)
#   second-libvirtd.sh revive         start libvirtd again after it died (kill -9),
#                                     keeping its configuration, its running
#                                     guests and its virtlogd; print its URI
#   second-libvirtd.sh stop           destroy its guests, stop its daemons
#   second-libvirtd.sh status         exit 0 if answering, 1 if a process is
#                                     there but not answering, 3 if stopped
#
# The daemons run in their own mount namespace, where these host directories
# are replaced by bind mounts of directories under the state dir
# (${PANEL_SECOND_HOST_DIR:-/var/lib/panel-second-host}):
#
#   /etc/libvirt        <- STATE/etc    (fresh copy of the host's on every
#                                        cold start, minus domains, networks,
#                                        pools, secrets, hooks and autostart)
#   /run/libvirt        <- STATE/run    (sockets and pid files)
#   /var/lib/libvirt    <- STATE/lib    (with the host's /var/lib/libvirt/boot
#                                        bound inside it: the test guest kernel
#                                        has the same path on both hosts)
#   /var/log/libvirt    <- STATE/log
#   /var/cache/libvirt  <- STATE/cache  (seeded with the host's QEMU
#                                        capabilities cache)
#
# Nothing is mounted in the host's namespace; the mounts go away with the last
# process of the namespace. It listens on 127.0.0.1 only (TCP without auth, and
# with --tls also TLS, asking every client for a certificate of the CA), and
# has its own host UUID (STATE/host-uuid), so libvirt accepts migrations
# between it and qemu:///system. It shares the host's network namespace:
# migration URIs such as tcp://127.0.0.1:49152 reach the other side's QEMU.
set -euo pipefail

STATE_DIR=${PANEL_SECOND_HOST_DIR:-/var/lib/panel-second-host}
DEFAULT_PORT=16519
START_TIMEOUT=20   # seconds to wait for the daemon to answer
STOP_TIMEOUT=15    # seconds to wait for a daemon to exit after SIGTERM

ETC_DIR=$STATE_DIR/etc
RUN_DIR=$STATE_DIR/run
LIB_DIR=$STATE_DIR/lib
LOG_DIR=$STATE_DIR/log
CACHE_DIR=$STATE_DIR/cache
PORT_FILE=$STATE_DIR/port
TLS_FILE=$STATE_DIR/tls    # the --tls settings of the running daemon ("" without)
UUID_FILE=$STATE_DIR/host-uuid
LOCK_FILE=$STATE_DIR/lock
# Host-side paths of the pid files (inside the namespace: /run/libvirt/*.pid).
LIBVIRTD_PID=$RUN_DIR/libvirtd.pid
VIRTLOGD_PID=$RUN_DIR/virtlogd.pid

HOST_BOOT_DIR=/var/lib/libvirt/boot
BOUND_DIRS=(/etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt)

log() { echo "second-libvirtd: $*" >&2; }
die() { log "$*"; exit 1; }

uri_for() { echo "qemu+tcp://127.0.0.1:$1/system"; }

running_port() {
  if [ -s "$PORT_FILE" ]; then cat "$PORT_FILE"; else echo "$DEFAULT_PORT"; fi
}

# The pid in a pid file, if that process is alive, named $2 and runs in a
# mount namespace where /run/libvirt is our $RUN_DIR. Guards against stale pid
# files whose pid was reused (by anything, including the main libvirtd).
live_pid() {
  local pidfile=$1 name=$2 pid stat
  [ -s "$pidfile" ] || return 1
  # The daemon removes its pid file when it exits: may vanish under us.
  pid=$( { tr -dc '0-9' <"$pidfile"; } 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  # Field 3 is the state; a zombie has already exited.
  case "${stat##*) }" in Z*|X*) return 1 ;; esac
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  [ "$(stat -L -c %d:%i "/proc/$pid/root/run/libvirt" 2>/dev/null)" = \
    "$(stat -L -c %d:%i "$RUN_DIR")" ] || return 1
  echo "$pid"
}

answers() {
  timeout 10 virsh -q -c "$(uri_for "$1")" uri >/dev/null 2>&1
}

# SIGTERM, wait, then SIGKILL.
stop_daemon() {
  local pidfile=$1 name=$2 pid i
  pid=$(live_pid "$pidfile" "$name") || { rm -f "$pidfile"; return 0; }
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    live_pid "$pidfile" "$name" >/dev/null || break
    sleep 0.1
  done
  if live_pid "$pidfile" "$name" >/dev/null; then
    log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      live_pid "$pidfile" "$name" >/dev/null || break
      sleep 0.1
    done
  fi
  live_pid "$pidfile" "$name" >/dev/null && die "$name (pid $pid) does not exit"
  rm -f "$pidfile"
}

# Pids of processes (other than ours) that see $RUN_DIR as /run/libvirt: the
# daemons and the QEMU processes they started.
namespace_pids() {
  local want p
  want=$(stat -L -c %d:%i "$RUN_DIR")
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    [ "$(stat -L -c %d:%i "/proc/$p/root/run/libvirt" 2>/dev/null)" = "$want" ] && echo "$p"
  done
  return 0
}

make_config() {
  local port=$1 tls=$2 uuid
  rm -rf "$ETC_DIR"
  cp -a /etc/libvirt "$ETC_DIR"
  # An empty host: nothing defined on the main host comes along, and nothing
  # starts by itself (no default network).
  find "$ETC_DIR" -depth -name autostart -exec rm -rf {} +
  find "$ETC_DIR" -name '*.xml' -not -path "$ETC_DIR/nwfilter/*" -delete
  rm -rf "$ETC_DIR"/storage "$ETC_DIR"/secrets/* "$ETC_DIR"/hooks/*

  if [ ! -s "$UUID_FILE" ]; then
    cat /proc/sys/kernel/random/uuid >"$UUID_FILE.tmp"
    mv "$UUID_FILE.tmp" "$UUID_FILE"
  fi
  uuid=$(cat "$UUID_FILE")
  cat >"$ETC_DIR/libvirtd.conf" <<EOF
# Written by scripts/second-libvirtd.sh: the second test host.
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "$port"
auth_tcp = "none"
host_uuid = "$uuid"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  if [ -n "$tls" ]; then
    # shellcheck disable=SC2086 # "TLS_PORT PKI_DIR [DN]", checked by parse_tls
    tls_config $tls >>"$ETC_DIR/libvirtd.conf"
    # shellcheck disable=SC2086
    vnc_tls_config $tls >>"$ETC_DIR/qemu.conf"
  else
    echo "listen_tls = 0" >>"$ETC_DIR/libvirtd.conf"
  fi
  # Incoming migrations get ports from a range of this host's own: all the hosts share
  # one network namespace, and two libvirtds handing out ports from the same default
  # range (49152-49215) can give one port to two migrations at once.
  local migration_min=$((50000 + (port % 100) * 64))
  printf 'migration_port_min = %d\nmigration_port_max = %d\n' \
    "$migration_min" "$((migration_min + 63))" >>"$ETC_DIR/qemu.conf"
}

# libvirtd.conf lines for a TLS listener: tls_config TLS_PORT PKI_DIR [DN].
tls_config() {
  local tls_port=$1 dir=$2 dn=${3:-}
  cat <<EOF
# qemu+tls://127.0.0.1:$tls_port/system: clients need a certificate signed by the CA.
listen_tls = 1
tls_port = "$tls_port"
auth_tls = "none"
ca_file = "$dir/cacert.pem"
cert_file = "$dir/servercert.pem"
key_file = "$dir/serverkey.pem"
tls_no_verify_certificate = 0
EOF
  if [ -n "$dn" ]; then
    printf 'tls_allowed_dn_list = ["%s"]\n' "$dn"
  fi
}

# qemu.conf lines for VNC displays that speak TLS only and ask clients for a
# certificate of the CA: vnc_tls_config TLS_PORT PKI_DIR [DN]. QEMU reads the
# certificates from /etc/libvirt/vnc-pki, under QEMU's own names and readable by
# its user.
vnc_tls_config() {
  local dir=$2 vnc=$ETC_DIR/vnc-pki group
  group=$(stat -c %G /var/lib/libvirt/qemu 2>/dev/null || echo root)
  rm -rf "$vnc"
  install -d -m 0750 -g "$group" "$vnc"
  install -m 0640 -g "$group" "$dir/cacert.pem" "$vnc/ca-cert.pem"
  install -m 0640 -g "$group" "$dir/servercert.pem" "$vnc/server-cert.pem"
  install -m 0640 -g "$group" "$dir/serverkey.pem" "$vnc/server-key.pem"
  cat <<EOF
# VNC displays speak TLS (VeNCrypt, x509) and ask clients for a certificate of the CA.
vnc_tls = 1
vnc_tls_x509_cert_dir = "/etc/libvirt/vnc-pki"
vnc_tls_x509_verify = 1
EOF
}

# The --tls options of start, checked, as "TLS_PORT PKI_DIR [DN]" ("" without --tls).
parse_tls() {
  local tls_port="" dir="" dn="" f
  while [ $# -gt 0 ]; do
    case "$1" in
      --tls)
        [ $# -ge 3 ] || die "--tls needs a port and a directory"
        tls_port=$2 dir=$3
        shift 3
        ;;
      --allowed-dn)
        [ $# -ge 2 ] || die "--allowed-dn needs a DN"
        dn=$2
        shift 2
        ;;
      *) die "unknown option: $1" ;;
    esac
  done
  if [ -z "$tls_port" ]; then
    [ -z "$dn" ] || die "--allowed-dn needs --tls"
    return 0
  fi
  [[ $tls_port =~ ^[0-9]+$ ]] && [ "$tls_port" -ge 1 ] && [ "$tls_port" -le 65535 ] \
    || die "bad TLS port: $tls_port"
  # No spaces in the DN: the settings are kept as one space-separated line.
  [[ $dn =~ ^[A-Za-z0-9=,.*_-]*$ ]] \
    || die "the DN may hold only letters, digits and = , . * _ -"
  dir=$(realpath -e "$dir") || die "no such directory: $dir"
  [[ $dir =~ ^[A-Za-z0-9/._-]+$ ]] \
    || die "the PKI directory's path may hold only letters, digits and / . _ -"
  for f in "${BOUND_DIRS[@]}"; do
    case "$dir/" in "$f"/*) die "the PKI directory must not be under $f" ;; esac
  done
  for f in cacert.pem servercert.pem serverkey.pem; do
    [ -s "$dir/$f" ] || die "$dir/$f is missing"
  done
  echo "$tls_port $dir${dn:+ $dn}"
}

make_dirs() {
  mkdir -p "$RUN_DIR" "$LOG_DIR/qemu" "$CACHE_DIR/qemu/capabilities" \
    "$LIB_DIR/boot" "$LIB_DIR/images" "$LIB_DIR/qemu"
  chmod 0755 "$RUN_DIR"
  chmod 0711 "$LIB_DIR/boot" "$LIB_DIR/images" "$CACHE_DIR" "$CACHE_DIR/qemu"
  chmod 0755 "$LIB_DIR"
  if [ -d /var/lib/libvirt/qemu ]; then
    chown --reference=/var/lib/libvirt/qemu "$LIB_DIR/qemu"
    chmod --reference=/var/lib/libvirt/qemu "$LIB_DIR/qemu"
  fi
  # The test guest's kernel lives there; the bind mount needs it to exist.
  mkdir -p "$HOST_BOOT_DIR"
  # Seed the QEMU capabilities cache: the probe costs seconds, and the
  # cached result is valid here (same binaries, same kernel, same /dev/kvm).
  local f
  for f in /var/cache/libvirt/qemu/capabilities/*.xml; do
    [ -e "$f" ] || continue
    [ -e "$CACHE_DIR/qemu/capabilities/${f##*/}" ] || cp -p "$f" "$CACHE_DIR/qemu/capabilities/"
  done
  # Stale sockets and pid files of a run that was killed.
  rm -f "$LIBVIRTD_PID" "$VIRTLOGD_PID" "$RUN_DIR"/libvirt-sock "$RUN_DIR"/libvirt-sock-ro \
    "$RUN_DIR"/libvirt-admin-sock "$RUN_DIR"/virtlogd-sock "$RUN_DIR"/virtlogd-admin-sock
}

launch() {
  # Runs in the new mount namespace. The daemons daemonize (-d) and keep the
  # namespace alive; stdio goes to a log file so that a caller reading our
  # output through a pipe is not kept waiting by the daemons; fd 9 (the lock)
  # is closed so that the daemons do not hold it.
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 \
    S_ETC="$ETC_DIR" S_RUN="$RUN_DIR" S_LIB="$LIB_DIR" S_LOG="$LOG_DIR" \
    S_CACHE="$CACHE_DIR" S_BOOT="$HOST_BOOT_DIR" \
    unshare --mount --propagation private -- /bin/bash -euc '
      mount --make-rprivate /
      # Bind the host boot dir into the state lib dir first (it is hidden
      # once /var/lib/libvirt is covered), then bind the lib dir recursively.
      mount --bind "$S_BOOT" "$S_LIB/boot"
      mount --rbind "$S_LIB" /var/lib/libvirt
      mount --bind "$S_ETC" /etc/libvirt
      mount --bind "$S_RUN" /run/libvirt
      mount --bind "$S_LOG" /var/log/libvirt
      mount --bind "$S_CACHE" /var/cache/libvirt
      virtlogd --daemon --pid-file /run/libvirt/virtlogd.pid
      exec libvirtd --daemon --listen --config /etc/libvirt/libvirtd.conf \
        --pid-file /run/libvirt/libvirtd.pid
    ' </dev/null >>"$LOG_DIR/launch.log" 2>&1 9>&-
}

check_state_dir() {
  local d real
  real=$(realpath -m "$STATE_DIR")
  for d in "${BOUND_DIRS[@]}"; do
    case "$real/" in "$d"/*) die "state dir $STATE_DIR must not be under $d" ;; esac
  done
  [ "$(id -u)" = 0 ] || die "must run as root"
  mkdir -p "$STATE_DIR"
  chmod 0700 "$STATE_DIR"
}

lock() {
  exec 9>"$LOCK_FILE"
  flock -w 120 9 || die "timed out waiting for $LOCK_FILE"
}

cmd_start() {
  local port=$DEFAULT_PORT tls pid i t0 p
  if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    port=$1
    shift
  fi
  [[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
    || die "bad port: $port"
  tls=$(parse_tls "$@") || exit 1
  check_state_dir
  lock
  t0=$(date +%s%N)

  if pid=$(live_pid "$LIBVIRTD_PID" libvirtd); then
    local rport
    rport=$(running_port)
    [ "$rport" = "$port" ] || die "already running on port $rport (pid $pid); stop it first"
    [ "$(cat "$TLS_FILE" 2>/dev/null || true)" = "$tls" ] \
      || die "already running with other TLS settings (pid $pid); stop it first"
    # Running: answering now, or still starting up.
    for ((i = 0; i < START_TIMEOUT * 4; i++)); do
      if answers "$port"; then
        uri_for "$port"
        return 0
      fi
      live_pid "$LIBVIRTD_PID" libvirtd >/dev/null || break
      sleep 0.25
    done
    log "libvirtd (pid $pid) does not answer; restarting it"
  fi

  # Cold start. Leftovers of a killed run go first.
  stop_daemon "$LIBVIRTD_PID" libvirtd
  stop_daemon "$VIRTLOGD_PID" virtlogd
  for p in "$port" ${tls:+"${tls%% *}"}; do
    if ss -Hltn "sport = :$p" | grep -q .; then
      die "port $p is already in use: $(ss -Hltnp "sport = :$p" | head -1)"
    fi
  done
  make_dirs
  make_config "$port" "$tls"
  echo "$port" >"$PORT_FILE"
  echo "$tls" >"$TLS_FILE"
  echo "--- $(date -Is) start port $port" >>"$LOG_DIR/launch.log"
  launch || die "launching the daemons failed; see $LOG_DIR/launch.log: $(tail -5 "$LOG_DIR/launch.log")"

  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    if answers "$port"; then
      log "started in $((($(date +%s%N) - t0) / 1000000)) ms," \
        "pid $(live_pid "$LIBVIRTD_PID" libvirtd || echo '?'), state in $STATE_DIR"
      uri_for "$port"
      return 0
    fi
    if [ "$i" -ge 10 ] && ! live_pid "$LIBVIRTD_PID" libvirtd >/dev/null; then
      die "libvirtd exited; see $LOG_DIR/libvirtd.log: $(tail -5 "$LOG_DIR/libvirtd.log" 2>/dev/null)"
    fi
    sleep 0.1
  done
  die "libvirtd does not answer on $(uri_for "$port") after ${START_TIMEOUT}s; see $LOG_DIR/libvirtd.log"
}

# libvirtd alone, after a crash: the configuration stays as it was (defined
# domains, pools, networks), the QEMU processes keep running and the new
# daemon reattaches to them, like a libvirtd restarted on a real host.
cmd_revive() {
  local port pid vpid i
  check_state_dir
  lock
  [ -s "$PORT_FILE" ] && [ -d "$ETC_DIR" ] || die "never started here: use start"
  port=$(running_port)
  if live_pid "$LIBVIRTD_PID" libvirtd >/dev/null; then
    for ((i = 0; i < START_TIMEOUT * 4; i++)); do
      answers "$port" && { uri_for "$port"; return 0; }
      sleep 0.25
    done
    die "libvirtd runs but does not answer on $(uri_for "$port")"
  fi
  rm -f "$LIBVIRTD_PID" "$RUN_DIR"/libvirt-sock "$RUN_DIR"/libvirt-sock-ro \
    "$RUN_DIR"/libvirt-admin-sock
  echo "--- $(date -Is) revive port $port" >>"$LOG_DIR/launch.log"
  if vpid=$(live_pid "$VIRTLOGD_PID" virtlogd); then
    # Into the namespace that virtlogd and the guests still hold.
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 \
      nsenter --mount="/proc/$vpid/ns/mnt" -- \
      libvirtd --daemon --listen --config /etc/libvirt/libvirtd.conf \
      --pid-file /run/libvirt/libvirtd.pid \
      </dev/null >>"$LOG_DIR/launch.log" 2>&1 9>&- \
      || die "launching libvirtd failed; see $LOG_DIR/launch.log"
  else
    make_dirs
    launch || die "launching the daemons failed; see $LOG_DIR/launch.log"
  fi
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    if answers "$port"; then
      uri_for "$port"
      return 0
    fi
    sleep 0.1
  done
  die "libvirtd does not answer on $(uri_for "$port") after ${START_TIMEOUT}s"
}

cmd_stop() {
  local port dom pids p i
  check_state_dir
  lock
  port=$(running_port)
  if live_pid "$LIBVIRTD_PID" libvirtd >/dev/null && answers "$port"; then
    # Its guests are test guests: end them rather than orphan them.
    while read -r dom; do
      [ -n "$dom" ] || continue
      log "destroying guest $dom"
      timeout 30 virsh -q -c "$(uri_for "$port")" destroy "$dom" >/dev/null 2>&1 || true
    done < <(timeout 10 virsh -q -c "$(uri_for "$port")" list --name 2>/dev/null || true)
  fi
  stop_daemon "$LIBVIRTD_PID" libvirtd
  stop_daemon "$VIRTLOGD_PID" virtlogd
  # Anything else left in the namespace (a QEMU whose daemon was killed).
  [ -d "$RUN_DIR" ] || return 0
  pids=$(namespace_pids)
  if [ -n "$pids" ]; then
    log "killing leftover processes in its namespace: $(echo $pids)"
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
      [ -z "$(namespace_pids)" ] && break
      sleep 0.1
    done
  fi
  return 0
}

cmd_status() {
  local pid port
  [ -d "$RUN_DIR" ] || { echo "stopped"; return 3; }
  port=$(running_port)
  if pid=$(live_pid "$LIBVIRTD_PID" libvirtd); then
    if answers "$port"; then
      echo "running: pid $pid, $(uri_for "$port")"
      return 0
    fi
    echo "not answering: libvirtd pid $pid, $(uri_for "$port")"
    return 1
  fi
  if pid=$(live_pid "$VIRTLOGD_PID" virtlogd); then
    echo "not answering: libvirtd gone, virtlogd pid $pid left"
    return 1
  fi
  echo "stopped"
  return 3
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  revive) cmd_revive ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start [PORT] [--tls TLS_PORT PKI_DIR [--allowed-dn DN]]" \
      "| revive | stop | status" >&2
    exit 2
    ;;
esac
