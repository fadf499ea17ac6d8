#!/usr/bin/env bash
# Proves that `make run` works from the runtime lock alone (scripts/check_run.py says
# how): a fresh virtualenv from requirements.txt, `pip check`, then `make run` on spare
# ports with its own data folder, Redis database (13) and Celery queue, each process
# checked, then SIGTERM. Leaves nothing behind. make test runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/panel-check-run.XXXXXX)
export REDIS_URL=${PANEL_CHECK_REDIS_URL:-redis://127.0.0.1:6379/13}
cleanup() {
  redis-cli -u "$REDIS_URL" flushdb >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

printf '\033[1m==> %s\033[0m\n' "Runtime check: a fresh virtualenv from requirements.txt alone"
PANEL_VENV="$work/venv" PANEL_VAR_DIR="$work/var" scripts/install.sh
"$work/venv/bin/pip" check
"$work/venv/bin/python" scripts/check_run.py "$work/var"
