#!/usr/bin/env bash
# Makes sure the panel's own Redis runs, and writes how to reach it.
#
# The panel never uses a Redis without a password: it starts its own redis-server, on
# 127.0.0.1:$PANEL_REDIS_PORT (6380) only, with a password generated once. The instance
# belongs to the machine, like libvirtd or PostgreSQL, so every checkout of the panel on
# it reaches the same one: its password, configuration (both mode 600), log and pid file
# are in $PANEL_REDIS_DIR (/var/lib/kvm-panel/redis-<port>). The script writes
# REDIS_URL=redis://:<password>@127.0.0.1:<port>/0 to $PANEL_VAR_DIR/redis.env (mode 600),
# which scripts/run.sh, scripts/test.sh and scripts/check-run.sh read.
#
# Run again, it finds its instance by the password and leaves it running. A Redis that
# is not the panel's on that port (one without a password, like Debian's redis-server
# service or any older install on 6379, or one with another password) is neither used
# nor changed: the script stops and says to choose another PANEL_REDIS_PORT.
#
#   PANEL_VAR_DIR=/tmp/x PANEL_REDIS_DIR=/tmp/x/redis PANEL_REDIS_PORT=6390 scripts/redis.sh
#   scripts/redis.sh --url 14    also prints the URL of database 14 (for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."

VAR_DIR=${PANEL_VAR_DIR:-$PWD/var}
PORT=${PANEL_REDIS_PORT:-6380}
HOST=127.0.0.1
DIR=${PANEL_REDIS_DIR:-/var/lib/kvm-panel/redis-$PORT}
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "redis: $*" >&2; exit 1; }

command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  die "redis-server and redis-cli are not installed (apt package redis-server); scripts/install.sh installs them"
case "$PORT" in '' | *[!0-9]*) die "PANEL_REDIS_PORT is '$PORT': give a port number" ;; esac

umask 077
mkdir -p "$VAR_DIR"
if ! mkdir -p "$DIR" 2>/dev/null; then
  # /var/lib is root's: make the folder once, for the user who runs the panel.
  sudo mkdir -p "$DIR" && sudo chown "$(id -u):$(id -g)" "$DIR"
fi
password_file=$DIR/redis.password
if [ ! -s "$password_file" ]; then
  # 32 random bytes as hex: safe in a URL and in the configuration file as it is.
  # Written aside and moved without overwriting: of two first runs at once, one wins.
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$password_file.$$"
  mv -n "$password_file.$$" "$password_file"
  rm -f "$password_file.$$"
fi
chmod 600 "$password_file"
PASSWORD=$(cat "$password_file")

# redis-cli takes the password from REDISCLI_AUTH, so it never shows in `ps`.
ours() { REDISCLI_AUTH=$PASSWORD redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null | grep -qx PONG; }

# Without a password first: a server that answers that is not protected, whatever it
# says to a password (Redis accepts any password when it has none).
answer=$(redis-cli -h "$HOST" -p "$PORT" ping 2>&1 || true)
case "$answer" in
  PONG)
    die "a Redis without a password already listens on $HOST:$PORT; the panel does not use it (anyone on this machine could read and change its data) and leaves it alone. Set PANEL_REDIS_PORT to a free port for the panel's own Redis." ;;
  *NOAUTH*)
    ours || die "a Redis that is not the panel's (its password is not the one in $password_file) listens on $HOST:$PORT. Set PANEL_REDIS_PORT to a free port." ;;
  *)
    cat >"$DIR/redis.conf" <<EOF
# Written by scripts/redis.sh: the panel's own Redis. Holds the password: mode 600.
bind $HOST
protected-mode yes
port $PORT
requirepass $PASSWORD
daemonize yes
pidfile $DIR/redis.pid
logfile $DIR/redis.log
dir $DIR
save ""
appendonly no
EOF
    chmod 600 "$DIR/redis.conf"
    say "Starting the panel's Redis on $HOST:$PORT"
    redis-server "$DIR/redis.conf"
    for _ in $(seq 1 50); do
      ours && break
      sleep 0.2
    done
    ours || die "the panel's Redis did not answer on $HOST:$PORT; see $DIR/redis.log"
    ;;
esac

env_file=$VAR_DIR/redis.env
echo "REDIS_URL=redis://:$PASSWORD@$HOST:$PORT/0" >"$env_file.$$"
mv "$env_file.$$" "$env_file"
if [ "${1:-}" = "--url" ]; then
  echo "redis://:$PASSWORD@$HOST:$PORT/${2:-0}"
fi
