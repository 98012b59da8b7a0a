"""What a call to the cluster can end in (the same cases as the Rust SDK's ``ClientError``)."""

from __future__ import annotations

import json
from typing import Any


class PlumError(Exception):
    """Base of every error the SDK raises."""


class Unreachable(PlumError):
    """No replica answered in time, or none could take the request (no leader). Nothing was
    applied: a write whose outcome may be unknown ends as :class:`OutcomeUnknown` instead."""


class OutcomeUnknown(PlumError):
    """A write that may or may not have been applied (the leader was lost, or the attempt timed
    out after sending). Only idempotent writes are resent after this; read before deciding."""


class ConfigError(PlumError):
    """The client was given something it cannot use (no addresses, a malformed one)."""


class DecodeError(PlumError):
    """An answer that is not the JSON expected."""


class StatusError(PlumError):
    """A replica answered with an error status (4xx, or a 5xx that is not retryable)."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {error_message(status, body)}")

    @property
    def error_body(self) -> dict[str, Any] | None:
        """The cluster's ``{"error", "retryable", "outcomeUnknown", "detail", ...}``, if sent."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class NotFound(StatusError):
    """404."""


class Conflict(StatusError):
    """409: e.g. a compare-and-set against another version (``error_body["detail"]``)."""


class Unauthorized(StatusError):
    """401: no token, or one the cluster does not accept. Never retried on another replica."""


class Forbidden(StatusError):
    """403: the token's role may not make this call. Never retried on another replica."""


def error_message(status: int, text: str) -> str:
    """The ``error`` of a JSON error body, else the (clipped) text, else the status."""
    try:
        value = json.loads(text)
        if isinstance(value, dict) and str(value.get("error", "")).strip():
            return clip(str(value["error"]).strip())
    except ValueError:
        pass
    return clip(text.strip()) if text.strip() else f"HTTP {status}"


def status_error(status: int, body: str) -> StatusError:
    cls = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict}.get(status, StatusError)
    return cls(status, body)


def clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "..."
