#!/usr/bin/env bash
# Proves that `make run` works from the runtime lock alone (scripts/check_run.py says
# how): a fresh virtualenv from requirements.txt, `pip check`, then `make run` on spare
# ports with its own data folder, Redis database (13 of the panel's own Redis,
# scripts/redis.sh) and Celery queue, each process checked, then SIGTERM; then the same
# with PANEL_DB=postgres, on a scratch database of this machine's PostgreSQL. Leaves
# nothing behind. make test runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/panel-check-run.XXXXXX)
scratch_db=""
cleanup() {
  if [ -n "$scratch_db" ]; then
    dropdb -h "$pg_socket" --if-exists "$scratch_db" >/dev/null 2>&1 || true
  fi
  if [ -n "${REDIS_URL:-}" ] && [ -x "$work/venv/bin/python" ]; then
    # Through the URL in the environment: the password stays off command lines.
    "$work/venv/bin/python" -c 'import os, redis; redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()' \
      >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

printf '\033[1m==> %s\033[0m\n' "Runtime check: a fresh virtualenv from requirements.txt alone"
PANEL_VENV="$work/venv" PANEL_VAR_DIR="$work/var" scripts/install.sh
if [ -n "${PANEL_CHECK_REDIS_URL:-}" ]; then
  export REDIS_URL=$PANEL_CHECK_REDIS_URL
else
  REDIS_URL=$(scripts/redis.sh --url 13)
  export REDIS_URL
fi
"$work/venv/bin/pip" check
"$work/venv/bin/python" scripts/check_run.py "$work/var"

printf '\033[1m==> %s\033[0m\n' "Runtime check on PostgreSQL: PANEL_DB=postgres make run"
PANEL_DB=postgres PANEL_VENV="$work/venv" PANEL_VAR_DIR="$work/var-pg" scripts/install.sh
set -a
# shellcheck disable=SC1091 # written by scripts/postgres.sh
. "$work/var-pg/postgres.env"
set +a
# A database of its own beside the panel's, made and dropped by the panel's role.
pg_socket=$(echo "$DATABASE_URL" | sed -E 's#^postgres://[^@]*@([^:/]*).*#\1#; s#%2F#/#g')
scratch_db=panel_check_$$
createdb -h "$pg_socket" "$scratch_db"
export DATABASE_URL=${DATABASE_URL%/*}/$scratch_db
PANEL_DB=postgres "$work/venv/bin/python" scripts/check_run.py "$work/var-pg"
