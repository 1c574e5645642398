"""pyorder.kernel.signing: what the platform's webhook endpoints and the sandboxes rely on."""

import pytest

from pyorder.kernel.signing import (
    MalformedSignature,
    SignatureError,
    SignatureMismatch,
    StaleSignature,
    compute_signature,
    sign,
    verify,
)

BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
SECRET = "whsec_test"
NOW = 1_790_000_000


def test_a_signed_body_verifies_and_returns_its_timestamp() -> None:
    header = sign(BODY, SECRET, timestamp=NOW)
    assert header == f"t={NOW},v1={compute_signature(BODY, SECRET, NOW)}"
    assert verify(BODY, header, SECRET, now=NOW + 5) == NOW


def test_the_signature_covers_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(BODY, SECRET, NOW) == expected


@pytest.mark.parametrize(
    "body",
    [BODY.replace(b"succeeded", b"canceled"), BODY + b" ", b"", BODY[:-1]],
)
def test_a_tampered_body_fails(body: bytes) -> None:
    with pytest.raises(SignatureMismatch):
        verify(body, sign(BODY, SECRET, timestamp=NOW), SECRET, now=NOW)


def test_a_changed_timestamp_fails() -> None:
    signature = compute_signature(BODY, SECRET, NOW)
    with pytest.raises(SignatureMismatch):
        verify(BODY, f"t={NOW + 1},v1={signature}", SECRET, now=NOW)


def test_the_wrong_secret_fails() -> None:
    with pytest.raises(SignatureMismatch):
        verify(BODY, sign(BODY, "whsec_other", timestamp=NOW), SECRET, now=NOW)


@pytest.mark.parametrize("age_s", [301, 3600, -301])
def test_stale_or_future_timestamps_fail_even_when_the_signature_matches(age_s: int) -> None:
    with pytest.raises(StaleSignature):
        verify(BODY, sign(BODY, SECRET, timestamp=NOW), SECRET, now=NOW + age_s)


def test_the_tolerance_is_300_s_by_default_and_can_be_changed() -> None:
    header = sign(BODY, SECRET, timestamp=NOW)
    assert verify(BODY, header, SECRET, now=NOW + 300) == NOW
    with pytest.raises(StaleSignature):
        verify(BODY, header, SECRET, now=NOW + 61, tolerance_s=60)


def test_the_clock_is_used_by_default() -> None:
    assert verify(BODY, sign(BODY, SECRET), SECRET) > 0
    with pytest.raises(StaleSignature):
        verify(BODY, sign(BODY, SECRET, timestamp=NOW - 10_000_000), SECRET)


def test_rotation_any_matching_secret_or_v1_entry_is_enough() -> None:
    old = compute_signature(BODY, "whsec_old", NOW)
    new = compute_signature(BODY, SECRET, NOW)
    header = f"t={NOW},v1={old},v1={new},v0=ignored"
    assert verify(BODY, header, SECRET, now=NOW) == NOW
    assert verify(BODY, header, ["whsec_unrelated", "whsec_old"], now=NOW) == NOW
    with pytest.raises(SignatureMismatch):
        verify(BODY, header, ["whsec_a", "whsec_b"], now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "v1=abc",
        f"t={NOW}",
        f"t=soon,v1={compute_signature(BODY, SECRET, NOW)}",
        f"t={NOW},t={NOW},v1={compute_signature(BODY, SECRET, NOW)}",
        "garbage",
        "t=" + "1" * 5000 + ",v1=00",
    ],
)
def test_malformed_headers_fail(header: str | None) -> None:
    with pytest.raises(MalformedSignature):
        verify(BODY, header, SECRET, now=NOW)


def test_non_ascii_signatures_fail_cleanly() -> None:
    with pytest.raises(SignatureMismatch):
        verify(BODY, f"t={NOW},v1=é", SECRET, now=NOW)


def test_every_failure_is_a_value_error() -> None:
    assert issubclass(SignatureError, ValueError)
    for kind in (MalformedSignature, SignatureMismatch, StaleSignature):
        assert issubclass(kind, SignatureError)
