#!/usr/bin/env bash
# A libvirt host on this machine with a network of its own, reached over SSH,
# for tests of hosts whose loopback is not the panel's.
#
#   netns-host.sh start NAME AUTHORIZED_KEYS   start host NAME (letters and digits,
#                                              up to 8), print its qemu+ssh URI
#   netns-host.sh rekey NAME                   give its sshd a new host key, restart it
#   netns-host.sh stop NAME                    destroy its guests, stop its daemons,
#                                              remove its network namespace
#   netns-host.sh status NAME                  exit 0 if libvirtd and sshd run,
#                                              1 if only some do, 3 if stopped
#   netns-host.sh address NAME                 print its address
#   netns-host.sh state-dir NAME               print its state dir (its libvirtd's socket
#                                              is run/libvirt-sock there)
#   netns-host.sh cut NAME                     take its link down: it loses the network,
#                                              its daemons and guests keep running
#   netns-host.sh mend NAME                    bring its link up again
#   netns-host.sh panel-address                print this machine's address on the hosts' network
#
# The hosts of a run share one network: the bridge pbrID on this machine, with
# address 172.31.(250+ID).1/24, ID being PANEL_NETNS_ID (0-9, default 0; runs of
# different IDs do not meet). Host NAME is a network namespace, panel-NAME
# (panelID-NAME when ID is not 0), joined to the bridge by a veth pair: ph-NAME
# (phID-NAME) here, eth0 there, with the address .N+2 of that /24 for the slot
# N the script chose. The hosts reach each other and this machine over the
# bridge. Nothing is routed: no default route in the namespaces, forwarding
# untouched, so no host reaches anything but the bridge's network and its own
# loopback.
#
# In that network namespace, and in a mount namespace of their own, run its
# virtlogd, its virtlockd (QEMU's disk leases: lock_manager = "lockd"), the panel's
# HA agent (scripts/panel-ha-agent watch, its lease under /run/libvirt/panel-ha), its
# libvirtd (unix socket only, no TCP) and its sshd (on
# ADDRESS:22, its own host key, root by key only, the keys of AUTHORIZED_KEYS).
# As scripts/second-libvirtd.sh does, these directories are bind mounts of
# directories under the state dir (${PANEL_NETNS_HOSTS_DIR:-/var/lib/panel-netns-hosts[ID]}/NAME):
#
#   /etc/libvirt  /run/libvirt  /var/lib/libvirt (with the machine's
#   /var/lib/libvirt/boot bound inside: the test guest kernel)  /var/log/libvirt
#   /var/cache/libvirt
#
# and /var/lib/panel-shared, the shared storage, is the same directory at the
# same path on every such host and on this machine.
set -euo pipefail

NET_ID=${PANEL_NETNS_ID:-0}
[[ $NET_ID =~ ^[0-9]$ ]] || { echo "netns-host: PANEL_NETNS_ID must be one digit" >&2; exit 1; }
ID_TAG=${NET_ID#0}
BASE_DIR=${PANEL_NETNS_HOSTS_DIR:-/var/lib/panel-netns-hosts$ID_TAG}
SHARED_DIR=/var/lib/panel-shared
QEMU_PKI_DIR=$BASE_DIR/qemu-pki
NET_PREFIX=172.31.$((250 + NET_ID))
BRIDGE=pbr$NET_ID
START_TIMEOUT=20
STOP_TIMEOUT=15
HOST_BOOT_DIR=/var/lib/libvirt/boot
HA_AGENT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/panel-ha-agent
BOUND_DIRS=(/etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt)
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "netns-host: $*" >&2; }
die() { log "$*"; exit 1; }

setup_names() {
  NAME=${1:-}
  [[ $NAME =~ ^[a-z0-9]{1,8}$ ]] || die "bad host name '$NAME': use 1 to 8 lower-case letters or digits"
  NETNS=panel$ID_TAG-$NAME
  VETH=ph$ID_TAG-$NAME
  STATE_DIR=$BASE_DIR/$NAME
  ETC_DIR=$STATE_DIR/etc
  RUN_DIR=$STATE_DIR/run
  LIB_DIR=$STATE_DIR/lib
  LOG_DIR=$STATE_DIR/log
  CACHE_DIR=$STATE_DIR/cache
  SSH_DIR=$STATE_DIR/ssh
  SLOT_FILE=$STATE_DIR/slot
  UUID_FILE=$STATE_DIR/host-uuid
  LIBVIRTD_PID=$RUN_DIR/libvirtd.pid
  VIRTLOGD_PID=$RUN_DIR/virtlogd.pid
  SSHD_PID=$RUN_DIR/sshd.pid
  VIRTLOCKD_PID=$RUN_DIR/virtlockd.pid
  SOCKET_URI="qemu+unix:///system?socket=$RUN_DIR/libvirt-sock"
}

check_root() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  local real d
  real=$(realpath -m "$BASE_DIR")
  for d in "${BOUND_DIRS[@]}"; do
    case "$real/" in "$d"/*) die "state dir $BASE_DIR must not be under $d" ;; esac
  done
  mkdir -p "$BASE_DIR"
  chmod 0700 "$BASE_DIR"
}

lock() {
  exec 9>"$BASE_DIR/lock"
  flock -w 120 9 || die "timed out waiting for $BASE_DIR/lock"
}

# This host's slot: kept from an earlier start, else the lowest one no other host holds.
slot() {
  local n taken
  if [ -s "$SLOT_FILE" ]; then cat "$SLOT_FILE"; return; fi
  taken=$(cat "$BASE_DIR"/*/slot 2>/dev/null || true)
  for ((n = 0; n < 250; n++)); do
    grep -qx "$n" <<<"$taken" || { echo "$n" >"$SLOT_FILE"; echo "$n"; return; }
  done
  die "all 250 slots of $NET_PREFIX.0/24 are taken"
}
panel_address() { echo "$NET_PREFIX.1"; }
inner_address() { echo "$NET_PREFIX.$(($(slot) + 2))"; }

# As in second-libvirtd.sh: the pid in a pid file, if alive, named $2 and seeing our run dir.
live_pid() {
  local pidfile=$1 name=$2 pid stat
  [ -s "$pidfile" ] || return 1
  pid=$( { tr -dc '0-9' <"$pidfile"; } 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  case "${stat##*) }" in Z*|X*) return 1 ;; esac
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  [ "$(stat -L -c %d:%i "/proc/$pid/root/run/libvirt" 2>/dev/null)" = \
    "$(stat -L -c %d:%i "$RUN_DIR")" ] || return 1
  echo "$pid"
}

answers() { timeout 10 virsh -q -c "$SOCKET_URI" uri >/dev/null 2>&1; }

stop_daemon() {
  local pidfile=$1 name=$2 pid i
  pid=$(live_pid "$pidfile" "$name") || { rm -f "$pidfile"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    live_pid "$pidfile" "$name" >/dev/null || break
    sleep 0.1
  done
  if live_pid "$pidfile" "$name" >/dev/null; then
    log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
}

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

make_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$(panel_address)/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

# The bridge goes once its last host has.
drop_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || return 0
  [ -z "$(ip -o link show master "$BRIDGE" 2>/dev/null)" ] && ip link del "$BRIDGE" 2>/dev/null
  return 0
}

make_network() {
  make_bridge
  ip netns list | grep -qw "^$NETNS" || ip netns add "$NETNS"
  if ! ip link show "$VETH" >/dev/null 2>&1; then
    ip link add "$VETH" type veth peer name eth0 netns "$NETNS"
  fi
  ip addr flush dev "$VETH"
  ip link set "$VETH" master "$BRIDGE" up
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" addr replace "$(inner_address)/24" dev eth0
  ip -n "$NETNS" link set eth0 up
}

set_link() {
  check_root
  ip link show "$VETH" >/dev/null 2>&1 || die "host $NAME has no link: is it started?"
  ip link set "$VETH" "$1"
}

make_config() {
  local uuid
  rm -rf "$ETC_DIR"
  cp -a /etc/libvirt "$ETC_DIR"
  find "$ETC_DIR" -depth -name autostart -exec rm -rf {} +
  find "$ETC_DIR" -name '*.xml' -not -path "$ETC_DIR/nwfilter/*" -delete
  rm -rf "$ETC_DIR"/storage "$ETC_DIR"/secrets/* "$ETC_DIR"/hooks/*
  [ -s "$UUID_FILE" ] || cat /proc/sys/kernel/random/uuid >"$UUID_FILE"
  uuid=$(cat "$UUID_FILE")
  cat >"$ETC_DIR/libvirtd.conf" <<EOF
# Written by scripts/netns-host.sh: test host $NAME, reached over SSH only.
listen_tls = 0
listen_tcp = 0
host_uuid = "$uuid"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  # QEMU takes a lease on each disk through virtlockd (direct leases: fcntl locks on the
  # disk files themselves, which every host sees on the shared storage), so a disk in
  # use on one host cannot be started on another.
  printf '\n# scripts/netns-host.sh: disk leases through virtlockd.\nlock_manager = "lockd"\n' \
    >>"$ETC_DIR/qemu.conf"
  cat >"$ETC_DIR/panel-ha-agent.conf" <<EOF
# Written by scripts/netns-host.sh: the HA agent of test host $NAME keeps its lease in
# this host's own /run/libvirt (the machine's /run is shared by every test host).
LEASE_DIR=/run/libvirt/panel-ha
EOF
  # QEMU's certificates for migrations over TLS, in the host's own /etc/libvirt.
  make_qemu_pki
  cp -a "$QEMU_PKI_DIR" "$ETC_DIR/qemu-pki"
  printf '\n# scripts/netns-host.sh: migrations over TLS.\nmigrate_tls_x509_cert_dir = "/etc/libvirt/qemu-pki"\nmigrate_tls_x509_verify = 1\n' \
    >>"$ETC_DIR/qemu.conf"
}

# QEMU's TLS certificates of the hosts' network, made once for all its hosts: a CA, and
# one certificate that names every address of the network, for server and client use,
# under the names QEMU reads (ca-cert.pem, server-cert.pem, client-cert.pem and keys),
# readable by QEMU's user. The CA's key stays beside them, outside the hosts.
make_qemu_pki() {
  local dir=$QEMU_PKI_DIR group ext sans i
  [ -s "$dir/server-cert.pem" ] && return 0
  group=$(stat -c %G /var/lib/libvirt/qemu 2>/dev/null || echo root)
  rm -rf "$dir"
  install -d -m 0750 -g "$group" "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=panel test hosts CA" -keyout "$BASE_DIR/qemu-ca-key.pem" \
    -out "$dir/ca-cert.pem" 2>/dev/null
  sans="IP:$(panel_address)"
  for ((i = 2; i < 252; i++)); do sans+=",IP:$NET_PREFIX.$i"; done
  ext=$BASE_DIR/qemu-cert.ext
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$sans" >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=panel test host" -keyout "$dir/server-key.pem" -out "$BASE_DIR/qemu.csr" 2>/dev/null
  openssl x509 -req -in "$BASE_DIR/qemu.csr" -CA "$dir/ca-cert.pem" \
    -CAkey "$BASE_DIR/qemu-ca-key.pem" -CAcreateserial -CAserial "$BASE_DIR/qemu-ca.srl" \
    -days 3650 -extfile "$ext" -out "$dir/server-cert.pem" 2>/dev/null
  cp "$dir/server-cert.pem" "$dir/client-cert.pem"
  cp "$dir/server-key.pem" "$dir/client-key.pem"
  chgrp "$group" "$dir"/*.pem
  chmod 0640 "$dir"/*.pem
  rm -f "$BASE_DIR/qemu.csr" "$ext"
}

make_ssh_config() {
  local keys=$1
  mkdir -p "$SSH_DIR"
  chmod 0700 "$SSH_DIR"
  [ -s "$SSH_DIR/ssh_host_ed25519_key" ] ||
    ssh-keygen -q -t ed25519 -N '' -C "panel-netns-$NAME" -f "$SSH_DIR/ssh_host_ed25519_key"
  install -m 0600 "$keys" "$SSH_DIR/authorized_keys"
  cat >"$SSH_DIR/sshd_config" <<EOF
# Written by scripts/netns-host.sh: test host $NAME.
ListenAddress $(inner_address):22
HostKey $SSH_DIR/ssh_host_ed25519_key
PidFile /run/libvirt/sshd.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding local
PermitTunnel no
AllowAgentForwarding no
EOF
}

make_dirs() {
  mkdir -p "$RUN_DIR" "$LOG_DIR/qemu" "$CACHE_DIR/qemu/capabilities" \
    "$LIB_DIR/boot" "$LIB_DIR/images" "$LIB_DIR/qemu" "$HOST_BOOT_DIR" "$SHARED_DIR" /run/sshd
  chmod 0755 "$RUN_DIR" "$LIB_DIR"
  chmod 0711 "$LIB_DIR/boot" "$LIB_DIR/images" "$CACHE_DIR" "$CACHE_DIR/qemu"
  if [ -d /var/lib/libvirt/qemu ]; then
    chown --reference=/var/lib/libvirt/qemu "$LIB_DIR/qemu"
    chmod --reference=/var/lib/libvirt/qemu "$LIB_DIR/qemu"
  fi
  local f
  for f in /var/cache/libvirt/qemu/capabilities/*.xml; do
    [ -e "$f" ] || continue
    [ -e "$CACHE_DIR/qemu/capabilities/${f##*/}" ] || cp -p "$f" "$CACHE_DIR/qemu/capabilities/"
  done
  rm -f "$LIBVIRTD_PID" "$VIRTLOGD_PID" "$VIRTLOCKD_PID" "$SSHD_PID" "$RUN_DIR"/*-sock "$RUN_DIR"/*-sock-ro
}

launch() {
  env -i "$PATH_ENV" HOME=/root LANG=C.UTF-8 \
    S_ETC="$ETC_DIR" S_RUN="$RUN_DIR" S_LIB="$LIB_DIR" S_LOG="$LOG_DIR" \
    S_CACHE="$CACHE_DIR" S_BOOT="$HOST_BOOT_DIR" S_SHARED="$SHARED_DIR" S_SSH="$SSH_DIR" \
    S_AGENT="$HA_AGENT" \
    ip netns exec "$NETNS" unshare --mount --propagation private -- /bin/bash -euc '
      mount --make-rprivate /
      mount --bind "$S_BOOT" "$S_LIB/boot"
      mount --rbind "$S_LIB" /var/lib/libvirt
      mount --bind "$S_ETC" /etc/libvirt
      mount --bind "$S_RUN" /run/libvirt
      mount --bind "$S_LOG" /var/log/libvirt
      mount --bind "$S_CACHE" /var/cache/libvirt
      mount --bind "$S_SHARED" "$S_SHARED"
      virtlogd --daemon --pid-file /run/libvirt/virtlogd.pid
      virtlockd --daemon --pid-file /run/libvirt/virtlockd.pid
      setsid "$S_AGENT" watch </dev/null >>/var/log/libvirt/panel-ha-agent.log 2>&1 &
      libvirtd --daemon --config /etc/libvirt/libvirtd.conf --pid-file /run/libvirt/libvirtd.pid
      exec /usr/sbin/sshd -f "$S_SSH/sshd_config" -E /var/log/libvirt/sshd.log
    ' </dev/null >>"$LOG_DIR/launch.log" 2>&1 9>&-
}

# sshd again, in the namespaces that libvirtd holds. Its open sessions end too, as
# when the host was reinstalled: clients connect again and meet the new key.
restart_sshd() {
  local pid p
  pid=$(live_pid "$LIBVIRTD_PID" libvirtd) || die "libvirtd of $NAME does not run"
  stop_daemon "$SSHD_PID" sshd
  for p in $(namespace_pids); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sshd ]; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  env -i "$PATH_ENV" HOME=/root LANG=C.UTF-8 \
    nsenter --mount="/proc/$pid/ns/mnt" --net="/proc/$pid/ns/net" -- \
    /usr/sbin/sshd -f "$SSH_DIR/sshd_config" -E /var/log/libvirt/sshd.log \
    </dev/null >>"$LOG_DIR/launch.log" 2>&1 9>&- || die "sshd did not start; see $LOG_DIR/sshd.log"
  wait_sshd
}

wait_sshd() {
  local i
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    live_pid "$SSHD_PID" sshd >/dev/null && ip netns exec "$NETNS" ss -Hltn "sport = :22" | grep -q . && return 0
    sleep 0.1
  done
  die "sshd of $NAME does not listen; see $LOG_DIR/sshd.log"
}

cmd_start() {
  local keys=${1:-} i t0
  [ -n "$keys" ] && [ -r "$keys" ] || die "give the authorized_keys file for root on $NAME"
  check_root
  lock
  mkdir -p "$STATE_DIR"
  chmod 0700 "$STATE_DIR"
  t0=$(date +%s%N)
  if live_pid "$LIBVIRTD_PID" libvirtd >/dev/null && live_pid "$SSHD_PID" sshd >/dev/null && answers; then
    install -m 0600 "$keys" "$SSH_DIR/authorized_keys"
    echo "qemu+ssh://root@$(inner_address)/system"
    return 0
  fi
  stop_all
  make_network
  make_dirs
  make_config
  make_ssh_config "$keys"
  echo "--- $(date -Is) start" >>"$LOG_DIR/launch.log"
  launch || die "launching the daemons failed; see $LOG_DIR/launch.log: $(tail -5 "$LOG_DIR/launch.log")"
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    answers && break
    sleep 0.1
  done
  answers || die "libvirtd of $NAME does not answer; see $LOG_DIR/libvirtd.log"
  wait_sshd
  log "host $NAME started in $((($(date +%s%N) - t0) / 1000000)) ms at $(inner_address), state in $STATE_DIR"
  echo "qemu+ssh://root@$(inner_address)/system"
}

stop_all() {
  local dom pids p i
  if [ -d "$RUN_DIR" ]; then
    if live_pid "$LIBVIRTD_PID" libvirtd >/dev/null && answers; then
      while read -r dom; do
        [ -n "$dom" ] || continue
        timeout 30 virsh -q -c "$SOCKET_URI" destroy "$dom" >/dev/null 2>&1 || true
      done < <(timeout 10 virsh -q -c "$SOCKET_URI" list --name 2>/dev/null || true)
    fi
    stop_daemon "$SSHD_PID" sshd
    stop_daemon "$LIBVIRTD_PID" libvirtd
    stop_daemon "$VIRTLOGD_PID" virtlogd
    stop_daemon "$VIRTLOCKD_PID" virtlockd
    pids=$(namespace_pids)
    if [ -n "$pids" ]; then
      log "killing leftover processes of $NAME: $(echo $pids)"
      for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
      for ((i = 0; i < 50; i++)); do
        [ -z "$(namespace_pids)" ] && break
        sleep 0.1
      done
    fi
  fi
  ip link del "$VETH" 2>/dev/null || true
  if ip netns list | grep -qw "^$NETNS"; then ip netns del "$NETNS"; fi
  drop_bridge
}

cmd_status() {
  local d s
  [ -d "$RUN_DIR" ] || { echo "stopped"; return 3; }
  d=$(live_pid "$LIBVIRTD_PID" libvirtd) || d=""
  s=$(live_pid "$SSHD_PID" sshd) || s=""
  if [ -n "$d" ] && [ -n "$s" ] && answers; then
    echo "running: libvirtd pid $d, sshd pid $s, qemu+ssh://root@$(inner_address)/system"
    return 0
  fi
  if [ -z "$d" ] && [ -z "$s" ]; then echo "stopped"; return 3; fi
  echo "not answering: libvirtd pid ${d:-none}, sshd pid ${s:-none}"
  return 1
}

cmd=${1:-}
if [ "$cmd" = panel-address ]; then panel_address; exit 0; fi
setup_names "${2:-}"
case "$cmd" in
  start) cmd_start "${3:-}" ;;
  rekey)
    check_root; lock
    rm -f "$SSH_DIR/ssh_host_ed25519_key" "$SSH_DIR/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "panel-netns-$NAME" -f "$SSH_DIR/ssh_host_ed25519_key"
    restart_sshd ;;
  stop) check_root; lock; stop_all ;;
  status) cmd_status ;;
  address) inner_address ;;
  state-dir) echo "$STATE_DIR" ;;
  cut) set_link down ;;
  mend) set_link up ;;
  *) echo "usage: $0 start|rekey|stop|status|address|state-dir|cut|mend NAME [AUTHORIZED_KEYS] | panel-address" >&2; exit 2 ;;
esac
