"""Idempotency fingerprints: a request's parameters, not its bytes (Stripe's rule)."""

from aiohttp.test_utils import make_mocked_request

from pyorder.server.idempotency import CANONICAL, _fingerprint, _raw_fingerprint, _same_request


def test_keys_order_and_whitespace_do_not_change_the_fingerprint() -> None:
    req = make_mocked_request("POST", "/v1/orders")
    a = _fingerprint(req, b'{"lines":[{"sku":1,"quantity":2}],"address":{"city":"X"}}')
    b = _fingerprint(req, b'{ "address": {"city": "X"},\n  "lines": [{"quantity": 2, "sku": 1}] }')
    assert a == b
    assert a.startswith(CANONICAL)


def test_values_path_query_and_method_do_change_it() -> None:
    body = b'{"lines":[{"sku":1,"quantity":2}]}'
    base = _fingerprint(make_mocked_request("POST", "/v1/orders"), body)
    assert base != _fingerprint(make_mocked_request("POST", "/v1/orders"), body.replace(b"2", b"3"))
    assert base != _fingerprint(make_mocked_request("POST", "/v1/orders/batch"), body)
    assert base != _fingerprint(make_mocked_request("POST", "/v1/orders?x=1"), body)
    assert base != _fingerprint(make_mocked_request("PUT", "/v1/orders"), body)
    # Lists keep their order: the lines of an order are an ordered parameter.
    two = b'{"lines":[{"sku":1,"quantity":2},{"sku":2,"quantity":1}]}'
    swapped = b'{"lines":[{"sku":2,"quantity":1},{"sku":1,"quantity":2}]}'
    req = make_mocked_request("POST", "/v1/orders")
    assert _fingerprint(req, two) != _fingerprint(req, swapped)


def test_a_body_that_is_not_json_is_compared_as_bytes() -> None:
    req = make_mocked_request("POST", "/v1/orders")
    assert _fingerprint(req, b"{not json") == _fingerprint(req, b"{not json")
    assert _fingerprint(req, b"{not json") != _fingerprint(req, b"{not  json")
    # Bytes that happen to equal a canonical JSON text are tagged apart from it.
    assert _fingerprint(req, b"") != _fingerprint(req, b'""')


def test_a_fingerprint_stored_before_the_canonical_form_still_matches_its_bytes() -> None:
    req = make_mocked_request("POST", "/v1/orders")
    body = b'{"lines": []}'
    legacy = _raw_fingerprint(req, body)
    assert not legacy.startswith(CANONICAL)
    assert _same_request(legacy, _fingerprint(req, body), req, body)
    assert not _same_request(legacy, _fingerprint(req, b'{"lines":[]}'), req, b'{"lines":[]}')
