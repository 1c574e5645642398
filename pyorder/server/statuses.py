"""The HTTP status of each domain error, by its code: the one place that maps what the domain
refuses (``pyorder.kernel.errors``, codes only) to HTTP. ``tests/server/test_error_statuses.py``
checks that every ``DomainError`` subclass's code is here, and that the Rust order book, which
renders its refusals itself on the bytes path, answers each of its codes with this status."""

from pyorder.kernel.errors import DomainError

STATUSES: dict[str, int] = {
    # The kinds (pyorder.kernel.errors); a code not listed takes its kind's status (see status_of).
    "bad_request": 400,
    "malformed_json": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "invalid_input": 422,
    "unavailable": 503,
    # Conflicts: the state does not allow it (now).
    "out_of_stock": 409,
    "catalogue_read_only": 409,
    "purchase_limit_exceeded": 409,
    "not_on_sale": 409,
    "invalid_state": 409,
    "already_shipped": 409,
    "not_delivered": 409,
    "payment_in_progress": 409,
    "event_in_flight": 409,
    "window_full": 409,
    "too_many_endpoints": 409,
    "return_window_closed": 409,
    "idempotency_key_in_use": 409,
    "too_many_rules": 409,
    "already_listed": 409,
    "too_many_list_entries": 409,
    # Invalid input: well-formed, but not something this can do.
    "unstorable_value": 422,
    "refund_exceeds_charge": 422,
    "not_refundable": 422,
    "payment_method_unavailable": 422,
    "carrier_unavailable": 422,
    "window_unavailable": 422,
    "invalid_url": 422,
    "unknown_event_type": 422,
    "unknown_region": 422,
    "risk_blocked": 422,
    "category_not_returnable": 422,
    "return_exceeds_purchase": 422,
    "idempotency_key_reused": 422,
    "invalid_rule": 422,
    "invalid_thresholds": 422,
    # Providers' and carriers' webhooks.
    "invalid_signature": 400,
    "invalid_event": 400,
}


def status_of(error: DomainError) -> int:
    """The HTTP status of ``error``: its code's, else (a code missing from ``STATUSES``, which
    the test forbids) that of the nearest base class whose code is listed."""
    found = STATUSES.get(error.code)
    if found is not None:
        return found
    for kind in type(error).__mro__:
        if issubclass(kind, DomainError) and kind.code in STATUSES:
            return STATUSES[kind.code]
    return STATUSES[DomainError.code]
