#!/usr/bin/env bash
# Starts the whole panel in the foreground: web (uvicorn), Celery worker and
# beat, websockify, the host watcher and the stats collector. Ctrl-C or SIGTERM stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."

BIND=${PANEL_BIND:-127.0.0.1}
PORT=${PANEL_PORT:-8000}
WS_PORT=${PANEL_WEBSOCKIFY_PORT:-6080}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379/0}
export PANEL_WEBSOCKIFY_URL=${PANEL_WEBSOCKIFY_URL:-ws://$BIND:$WS_PORT/}
PY=.venv/bin/python

$PY manage.py bootstrap

pids=()
start() { "$@" & pids+=($!); }
stop() {
  trap - INT TERM EXIT
  echo "Stopping the panel..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

# HTTP and websockets; PANEL_WEB_WORKERS processes share the port. The options are
# those tests/stack.py runs the tests' web server with.
start .venv/bin/uvicorn panel.asgi:application --host "$BIND" --port "$PORT" \
  --workers "${PANEL_WEB_WORKERS:-2}" --lifespan off --no-proxy-headers \
  --ws-max-size 2097152 --timeout-graceful-shutdown 5
start .venv/bin/celery -A panel worker -l info -c 2 -Q "${PANEL_CELERY_QUEUE:-panel}"
start .venv/bin/celery -A panel beat -l info --schedule var/celerybeat-schedule
start env PYTHONPATH="$PWD" .venv/bin/websockify --token-plugin panel.console_tokens.TicketTokens \
  --token-source "$REDIS" "$BIND:$WS_PORT"
start $PY manage.py watch_hosts
start $PY manage.py collect_stats

echo "The panel is up at http://$BIND:$PORT/ (log in as admin). Ctrl-C stops it."
wait -n "${pids[@]}" || true
echo "A panel process exited; stopping the rest."
