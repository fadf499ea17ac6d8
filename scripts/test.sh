#!/usr/bin/env bash
# Runs lint and every test (unit, real libvirtd + qemu, headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export REDIS_URL=${PANEL_TEST_REDIS_URL:-redis://127.0.0.1:6379/14}

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python manage.py makemigrations --check --dry-run

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure." >&2
  exit 1
fi
exit "$rc"
