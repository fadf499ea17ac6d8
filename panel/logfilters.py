"""Logging filters the settings name (loaded before the apps: imports come late)."""

from __future__ import annotations

import logging


class BusyDatabaseLog(logging.Filter):
    """django.request logs every 5xx answer as an error, with its traceback when an
    exception came before a view. A 503 is the panel turning away what it cannot take
    now (a database busy or out of connections, answered with when to try again), not a
    fault: one warning line, without the traceback. Any other exception keeps both."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 503:
            return True
        from panel.middleware import is_database_busy  # LOGGING loads this module before the apps

        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and not is_database_busy(exc):
            return True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True
