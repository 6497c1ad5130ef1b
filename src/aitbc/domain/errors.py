"""The one exception tree of AITBC; the API maps each class to one HTTP status in one place.

AitbcError
├── InvalidInput          400/422  the request is malformed or breaks a rule
├── Unauthorized          401      no key, or a key that does not exist / was revoked
├── Forbidden             403      the key's role may not do this
├── NotFound              404      no such thing, or it belongs to another account
├── Conflict              409      the state moved on (stale lease, wrong status, idempotency clash)
├── Gone                  410      it existed but is no longer available
├── PayloadTooLarge       413      an input or upload over its limit
├── PaymentRequired       402      the balance cannot cover the hold
│   └── SpendingLimitReached 402   the hold would take the month past the account's spending limit
└── RateLimited           429      too many requests; carries retry_after seconds
"""

from __future__ import annotations


class AitbcError(Exception):
    """Base of every error AITBC raises on purpose; `code` is a stable machine-readable name."""

    status_code = 400
    code = "error"
    item: int | None = None  # in a batch, the index of the item that was refused

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def at_item(error: AitbcError, index: int) -> AitbcError:
    """The same error, naming the batch item that caused it (`item 3: …`), for a refused batch."""
    if error.item is None:
        error.item = index
        error.message = f"item {index}: {error.message}"
        error.args = (error.message,)
    return error


class InvalidInput(AitbcError):
    status_code = 422
    code = "invalid_input"


class Unauthorized(AitbcError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AitbcError):
    status_code = 403
    code = "forbidden"


class NotFound(AitbcError):
    status_code = 404
    code = "not_found"


class Conflict(AitbcError):
    status_code = 409
    code = "conflict"


class Gone(AitbcError):
    status_code = 410
    code = "gone"


class PayloadTooLarge(AitbcError):
    status_code = 413
    code = "payload_too_large"


class PaymentRequired(AitbcError):
    status_code = 402
    code = "payment_required"


class SpendingLimitReached(PaymentRequired):
    code = "spending_limit"


class RateLimited(AitbcError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
