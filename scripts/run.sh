#!/usr/bin/env bash
# Starts the whole panel in the foreground under supervisord (scripts/supervisord.conf):
# web (uvicorn), Celery worker and beat, websockify, the host watcher, the stats
# collector and the HA monitor. A process that exits is started again; Ctrl-C or SIGTERM stops them all.
#   PANEL_DB=postgres scripts/run.sh   the PostgreSQL database scripts/install.sh set up
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/panel-env.sh
. scripts/panel-env.sh

# The panel's own Redis, password-protected on loopback, unless REDIS_URL names another.
if [ -z "${REDIS_URL:-}" ]; then
  PANEL_VAR_DIR=$PANEL_VAR_DIR scripts/redis.sh
  set -a
  # shellcheck disable=SC1091 # written by scripts/redis.sh
  . "$PANEL_VAR_DIR/redis.env"
  set +a
fi

case "${PANEL_DB:-sqlite}" in
  sqlite) ;;
  postgres)
    if [ -z "${DATABASE_URL:-}" ]; then
      set -a
      # shellcheck disable=SC1091 # written by scripts/postgres.sh
      . "$PANEL_VAR_DIR/postgres.env"
      set +a
    fi
    ;;
  *) echo "run: PANEL_DB is '$PANEL_DB'; use sqlite (the default) or postgres." >&2; exit 2 ;;
esac

mkdir -p "$PANEL_LOG_DIR"
"$PANEL_VENV/bin/python" manage.py bootstrap

echo "Starting the panel at http://$PANEL_BIND:$PANEL_PORT/ (log in as admin)."
echo "Each process logs to $PANEL_LOG_DIR/<name>.log. Ctrl-C stops them all."
exec "$PANEL_VENV/bin/supervisord" -c scripts/supervisord.conf
