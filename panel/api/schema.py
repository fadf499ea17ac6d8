"""The OpenAPI document's view of the API's errors, which every operation can answer.

drf-spectacular documents what a view returns on success; the error answers
come from the exception handler (panel/api/errors.py) and the permission
layer, so they are added here for every operation, as API.md promises them.
"""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.openapi import AutoSchema

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
# {"field": ["message", ...]} (nested for nested fields) or {"detail": "..."}.
FIELD_ERRORS = {"type": "object", "additionalProperties": True}

ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("The request is malformed: field errors or a detail naming the problem.", FIELD_ERRORS),
    "401": ("Not authenticated.", DETAIL),
    "403": ("Seen but not allowed, or a quota exceeded (the detail names it).", DETAIL),
    "404": ("Not found, or outside the caller's projects.", DETAIL),
    "409": ("Conflicts with the object's current state or a job running on it.", DETAIL),
}


class PanelAutoSchema(AutoSchema):
    """AutoSchema that also documents the error answers every operation can give."""

    def _get_response_bodies(
        self, direction: Literal["request", "response"] = "response"
    ) -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, (description, schema) in ERRORS.items():
            responses.setdefault(
                code,
                {"description": description, "content": {"application/json": {"schema": schema}}},
            )
        return responses
