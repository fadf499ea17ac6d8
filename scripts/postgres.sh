#!/usr/bin/env bash
# Starts this machine's PostgreSQL (Debian's package) and gives the panel a role and a
# database, each made once. Writes DATABASE_URL to $PANEL_VAR_DIR/postgres.env (mode 600),
# which scripts/run.sh and scripts/test.sh read when PANEL_DB=postgres.
# The role may create databases: the tests make their own (test_panel) beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

VAR_DIR=${PANEL_VAR_DIR:-$PWD/var}
ROLE=${PANEL_PG_ROLE:-panel}
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

mkdir -p "$VAR_DIR"
env_file="$VAR_DIR/postgres.env"
if [ -s "$env_file" ]; then
  # shellcheck disable=SC1090
  password=$(. "$env_file"; echo "$DATABASE_URL" | sed -E 's#^[a-z]+://[^:]*:([^@]*)@.*#\1#')
else
  password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
fi
if ! as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'" | grep -q 1; then
  say "Creating PostgreSQL role $ROLE"
  as_postgres psql -q -p "$port" -c "CREATE ROLE \"$ROLE\" LOGIN CREATEDB PASSWORD '$password'"
else
  as_postgres psql -q -p "$port" -c "ALTER ROLE \"$ROLE\" LOGIN CREATEDB PASSWORD '$password'"
fi
if ! as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  say "Creating PostgreSQL database $DB"
  as_postgres createdb -p "$port" -O "$ROLE" "$DB"
fi
umask 077
echo "DATABASE_URL=postgres://$ROLE:$password@127.0.0.1:$port/$DB" > "$env_file"
