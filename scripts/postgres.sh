#!/usr/bin/env bash
# Starts this machine's PostgreSQL (Debian's package) and gives the panel a role and a
# database, each made once. Writes DATABASE_URL to $PANEL_VAR_DIR/postgres.env, which
# scripts/run.sh and scripts/test.sh read when PANEL_DB=postgres.
# The role is named after the user running the panel and logs in over the server's Unix
# socket by peer authentication (Debian's default for local connections): no password
# to keep, and every checkout on the machine reaches the same database the same way.
# The role may create databases: the tests make their own (test_panel_<pid>) beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

VAR_DIR=${PANEL_VAR_DIR:-$PWD/var}
ROLE=${PANEL_PG_ROLE:-$(id -un)}
DB=${PANEL_PG_DATABASE:-panel}
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
as_postgres() { $SUDO runuser -u postgres -- "$@"; }
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# The newest installed server version, and its cluster (made by the package's postinst).
version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -1)
[ -n "$version" ] || { echo "postgres: no PostgreSQL server is installed (apt package postgresql)" >&2; exit 1; }
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
  say "Creating PostgreSQL cluster $version/main"
  $SUDO pg_createcluster "$version" main
fi
cluster=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"')
port=$(echo "$cluster" | awk '{print $3}')
if ! echo "$cluster" | awk '{print $4}' | grep -q online; then
  say "Starting PostgreSQL $version/main"
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl start "postgresql@$version-main"
  else
    $SUDO pg_ctlcluster "$version" main start
  fi
fi
for _ in $(seq 1 50); do
  as_postgres pg_isready -q -p "$port" && break
  sleep 0.2
done
as_postgres pg_isready -q -p "$port" || { echo "postgres: the server on port $port does not answer" >&2; exit 1; }

if ! as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'" | grep -q 1; then
  say "Creating PostgreSQL role $ROLE"
  as_postgres psql -q -p "$port" -c "CREATE ROLE \"$ROLE\" LOGIN CREATEDB"
fi
if ! as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  say "Creating PostgreSQL database $DB"
  as_postgres createdb -p "$port" -O "$ROLE" "$DB"
fi
socket_dir=$(as_postgres psql -p "$port" -tAc "SHOW unix_socket_directories" | cut -d, -f1)
mkdir -p "$VAR_DIR"
# dj-database-url reads a socket directory as the URL's host, percent-encoded.
echo "DATABASE_URL=postgres://$ROLE@${socket_dir//\//%2F}:$port/$DB" >"$VAR_DIR/postgres.env"
