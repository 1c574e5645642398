"""Webhook signatures in Stripe's scheme, for the sandboxes that send and the server that checks.

A signed delivery carries the header ``Provider-Signature: t=<unix seconds>,v1=<hex>`` where the
hex is HMAC-SHA256, keyed by the endpoint's shared secret, of ``b"<t>." + body``. A receiver
recomputes it over the raw body bytes (before any JSON parsing), compares in constant time, and
refuses timestamps more than ``DEFAULT_TOLERANCE_S`` away from its clock, so a captured delivery
cannot be replayed later. Several ``v1`` entries may appear (a sender rotating secrets); one match
is enough. Entries of other schemes (``v0``) are ignored.

    header = sign(body, secret)                      # sender
    timestamp = verify(body, header, secret)         # receiver; raises SignatureError
"""

import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "Provider-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300
MAX_HEADER_LENGTH = 4096


class SignatureError(ValueError):
    """The signature is missing, malformed, does not match, or is outside the tolerance."""


class MalformedSignature(SignatureError):
    """The header is absent or cannot be parsed."""


class SignatureMismatch(SignatureError):
    """No ``v1`` entry matches the body under any of the secrets: tampered or wrong secret."""


class StaleSignature(SignatureError):
    """The signature matches but its timestamp is too far from now (a replay, or a bad clock)."""


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``b"<timestamp>." + payload`` under ``secret``."""
    signed = str(timestamp).encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Provider-Signature`` header value for ``payload``, timestamped now (unix seconds,
    UTC) unless ``timestamp`` is given."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={compute_signature(payload, secret, t)}"


def parse_header(header: str) -> tuple[int, list[str]]:
    """``(timestamp, [v1 signatures])`` from a header value; ``MalformedSignature`` if the
    timestamp is absent, repeated or not an integer, or there is no ``v1`` entry."""
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedSignature(f"the signature header is longer than {MAX_HEADER_LENGTH}")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise MalformedSignature(f"the signature header has an entry without '=': {item!r}")
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise MalformedSignature("the signature header needs exactly one integer 't=' entry")
    if not signatures:
        raise MalformedSignature(f"the signature header has no '{SCHEME}=' entry")
    return int(timestamps[0]), signatures


def verify(
    payload: bytes,
    header: str | None,
    secret: str | Sequence[str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check that ``header`` signs exactly ``payload`` (the raw body bytes) under ``secret`` (or
    any of several, while rotating) within ``tolerance_s`` seconds of ``now`` (unix seconds; the
    clock by default), either way. Returns the signed timestamp (unix seconds, UTC); raises a
    ``SignatureError`` subclass otherwise."""
    if not header:
        raise MalformedSignature(f"the {SIGNATURE_HEADER} header is missing")
    timestamp, signatures = parse_header(header)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    # Every candidate is compared (no early exit), each in constant time.
    matched = False
    for key in secrets:
        expected = compute_signature(payload, key, timestamp).encode("ascii")
        for candidate in signatures:
            # Bytes: compare_digest refuses non-ASCII str, and a header may hold anything.
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    if not matched:
        raise SignatureMismatch("no signature matches the body")
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance_s:
        raise StaleSignature(
            f"the signature is {clock - timestamp:.0f} s old; the tolerance is {tolerance_s:.0f} s"
        )
    return timestamp
