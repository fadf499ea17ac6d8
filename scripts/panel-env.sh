# Sourced by scripts/run.sh and scripts/panelctl: the settings scripts/supervisord.conf
# expands, from the environment or their defaults (the README's table lists them).
export PANEL_ROOT=${PANEL_ROOT:-$PWD}
export PANEL_VENV=${PANEL_VENV:-$PANEL_ROOT/.venv}
export PANEL_VAR_DIR=${PANEL_VAR_DIR:-$PANEL_ROOT/var}
export PANEL_LOG_DIR=${PANEL_LOG_DIR:-$PANEL_VAR_DIR/log}
export PANEL_BIND=${PANEL_BIND:-127.0.0.1}
export PANEL_PORT=${PANEL_PORT:-8000}
export PANEL_WEB_WORKERS=${PANEL_WEB_WORKERS:-2}
export PANEL_WEBSOCKIFY_PORT=${PANEL_WEBSOCKIFY_PORT:-6080}
export PANEL_WEBSOCKIFY_URL=${PANEL_WEBSOCKIFY_URL:-ws://$PANEL_BIND:$PANEL_WEBSOCKIFY_PORT/}
export PANEL_CELERY_QUEUE=${PANEL_CELERY_QUEUE:-panel}
export PANEL_WATCHERS=${PANEL_WATCHERS:-1}
export PANEL_COLLECTORS=${PANEL_COLLECTORS:-1}
export PANEL_QUICK_WORKERS=${PANEL_QUICK_WORKERS:-4}
export PANEL_LONG_WORKERS=${PANEL_LONG_WORKERS:-2}
# REDIS_URL: unset, scripts/run.sh uses the panel's own Redis (scripts/redis.sh), with
# its password, on 127.0.0.1:${PANEL_REDIS_PORT:-6380}.
