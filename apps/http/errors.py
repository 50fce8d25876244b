"""Domain errors that services raise and the API maps to problem details.

Services stay free of HTTP; each error carries the status and code the API
answers with, so the mapping lives in one place (problems.exception_handler).
"""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "domain-error"
    title: str | None = None

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidParameters(DomainError):
    """Query parameters or headers that the operation does not take, or
    values its declaration forbids; ``errors`` names each with its rule."""

    status = 400
    code = "invalid-parameters"


class NotFound(DomainError):
    status = 404
    code = "not-found"


class PreconditionRequired(DomainError):
    status = 428
    code = "precondition-required"


class PreconditionFailed(DomainError):
    status = 412
    code = "precondition-failed"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class QuotaExceeded(DomainError):
    status = 403
    code = "quota-exceeded"
    title = "Plan quota exceeded"
