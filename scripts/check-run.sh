#!/usr/bin/env bash
# Proves that `make run` works from the runtime lock alone (scripts/check_run.py says
# how): a fresh virtualenv from requirements.txt, `pip check`, then `make run` on spare
# ports with its own data folder, Redis database (13 of the panel's own Redis,
# scripts/redis.sh) and Celery queue, each process checked, then SIGTERM. Leaves
# nothing behind. make test runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/panel-check-run.XXXXXX)
cleanup() {
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
  scripts/redis.sh
  set -a
  # shellcheck disable=SC1091 # written by scripts/redis.sh
  . var/redis.env
  set +a
  export REDIS_URL=${REDIS_URL%/*}/13
fi
"$work/venv/bin/pip" check
"$work/venv/bin/python" scripts/check_run.py "$work/var"
