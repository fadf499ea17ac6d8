"""Errors services raise for views and the API to turn into messages and status codes."""

from __future__ import annotations


class ServiceError(Exception):
    """Bad input or a refused action; the message says what is wrong and what to do."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConflictError(ServiceError):
    """The object's current state does not allow the action."""

    status_code = 409


class UnavailableError(ServiceError):
    """The host that would do the work cannot be reached."""

    status_code = 503


class GoneError(ServiceError):
    """The object was deleted (by another request, a job or the watcher) while this ran."""

    status_code = 404
