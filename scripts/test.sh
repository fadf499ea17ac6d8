#!/usr/bin/env bash
# make test (and CI) runs, in this order:
#   1. the runtime check: make run from the runtime lock alone (scripts/check-run.sh);
#   2. the test install: scripts/install.sh --test (browser, PostgreSQL, dev lock);
#   3. lint: ruff, the migrations check, the import contracts (import-linter), mypy;
#   4. the whole suite on PostgreSQL;
#   5. on SQLite: every test that needs neither libvirt, the running stack nor Chromium,
#      and those marked `sqlite` (locking, the locked-database faults, races).
# With arguments it runs only pytest with them, on PANEL_DB (sqlite unless postgres):
#   scripts/test.sh tests/vms -x
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# The tests' Redis: PANEL_TEST_REDIS_URL, else database 14 of the panel's own
# (scripts/redis.sh: password-protected, on loopback).
use_redis() {
  if [ -n "${PANEL_TEST_REDIS_URL:-}" ]; then
    export REDIS_URL=$PANEL_TEST_REDIS_URL
    return
  fi
  REDIS_URL=$(scripts/redis.sh --url 14)
  export REDIS_URL
}

use_postgres() {
  set -a
  # shellcheck disable=SC1091 # written by scripts/postgres.sh
  . var/postgres.env
  set +a
}

pytest() {
  set +e
  .venv/bin/python -m pytest "$@"
  local rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure." >&2
    return 1
  fi
  return "$rc"
}

if [ $# -gt 0 ]; then
  use_redis
  [ "${PANEL_DB:-sqlite}" = postgres ] && use_postgres
  pytest "$@"
  exit $?
fi

started=$SECONDS
scripts/check-run.sh
scripts/install.sh --test
use_redis

say "Lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python manage.py makemigrations --check --dry-run
.venv/bin/lint-imports
.venv/bin/mypy

say "The whole suite on PostgreSQL"
(use_postgres && pytest)

say "On SQLite: every test that needs neither libvirt, the stack nor Chromium, and those marked sqlite"
pytest -m "sqlite or not (libvirt or stack or browser)"

say "make test passed in $((SECONDS - started)) s"
