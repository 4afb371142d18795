"""The errors botlite reports to clients: an HTTP status, a code, a message.

Every API error reaches the client as ``{"error": {"code", "message"}}``.
"""
from __future__ import annotations


class BotliteError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict:
        """Extra response headers (e.g. Retry-After)."""
        return {}


class BadRequest(BotliteError):
    status, code = 400, "bad_request"


class Unauthorized(BotliteError):
    status, code = 401, "unauthorized"


class Forbidden(BotliteError):
    status, code = 403, "forbidden"


class NotFound(BotliteError):
    status, code = 404, "not_found"


class MethodNotAllowed(BotliteError):
    status, code = 405, "method_not_allowed"


class Conflict(BotliteError):
    status, code = 409, "conflict"


class PayloadTooLarge(BotliteError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(BotliteError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(BotliteError):
    """Over a rate limit; ``retry_after`` seconds until the next request is accepted."""
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict:
        return {"Retry-After": str(self.retry_after)}


class InternalError(BotliteError):
    status, code = 500, "internal_error"


class ServiceUnavailable(BotliteError):
    status, code = 503, "unavailable"


STATUS_CODES = {cls.status: cls.code for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
    PayloadTooLarge, UnsupportedMediaType, TooManyRequests, InternalError, ServiceUnavailable)}
