"""The one table between the library's errors and HTTP status codes (docs/appliance-profile.md)."""

from __future__ import annotations

from typing import Final

from .errors import (
    AuthenticationRequired,
    Busy,
    CAFailure,
    EstError,
    MalformedRequest,
    MethodNotAllowed,
    NotAllowed,
    OperationNotSupported,
    RequestTimeout,
    RequestTooLarge,
    TooManyRequests,
    UnknownResource,
    UnsupportedMediaType,
)

STATUS: Final[dict[type[EstError], int]] = {
    MalformedRequest: 400,
    AuthenticationRequired: 401,
    NotAllowed: 403,
    UnknownResource: 404,
    MethodNotAllowed: 405,
    RequestTimeout: 408,
    RequestTooLarge: 413,
    UnsupportedMediaType: 415,
    TooManyRequests: 429,
    CAFailure: 500,
    OperationNotSupported: 501,
    Busy: 503,
}
ERROR_FOR_STATUS: Final[dict[int, type[EstError]]] = {status: cls for cls, status in STATUS.items()}


def status_for(error: EstError) -> int:
    """The status code for a library error (its nearest listed ancestor); 500 for the rest."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
