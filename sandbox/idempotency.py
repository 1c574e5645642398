"""Stripe's ``Idempotency-Key`` semantics for every POST to a sandbox's API.

The first answer to a key is stored and replayed, with ``Idempotent-Replayed: true``, for
``retention_s`` (24 h by default) to any request with the same key, method, path and body
(compared as parsed JSON, so key order and spacing do not matter). The same key with a different
request is 422 ``idempotency_key_reused``; a second request while the first is still running is
409 ``idempotency_key_in_use``. As at Stripe, requests refused before they ran (unreadable or
invalid bodies, see ``SandboxError.replayable``) store nothing, and neither do unexpected
server failures: the key can be used again. Keys are scoped to the instance.

A transport fault that loses the answer (``lost_response_rate``) happens *after* the answer is
stored: the retry gets the original, which is the point of the knob.
"""

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sandbox.bodies import render_error
from sandbox.errors import InvalidInput, SandboxError, UnexpectedState

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
DEFAULT_RETENTION_S = 24 * 3600.0


class KeyInUse(UnexpectedState):
    code = "idempotency_key_in_use"
    replayable = False


class KeyReused(InvalidInput):
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class StoredAnswer:
    fingerprint: bytes
    status: int
    body: bytes
    content_type: str
    stored_at: float
    """``time.monotonic()`` seconds."""


class IdempotencyStore:
    """First answers by key, oldest first, dropped after ``retention_s`` or beyond ``capacity``."""

    def __init__(self, retention_s: float = DEFAULT_RETENTION_S, capacity: int = 1_000_000) -> None:
        self.retention_s = retention_s
        self.capacity = capacity
        self._answers: OrderedDict[str, StoredAnswer] = OrderedDict()
        self._in_flight: set[str] = set()

    def lookup(self, key: str) -> StoredAnswer | None:
        self._purge()
        return self._answers.get(key)

    def store(self, key: str, answer: StoredAnswer) -> None:
        self._answers[key] = answer
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)

    def _purge(self) -> None:
        horizon = time.monotonic() - self.retention_s
        while self._answers:
            oldest = next(iter(self._answers.values()))
            if oldest.stored_at >= horizon:
                break
            self._answers.popitem(last=False)

    def middleware(self) -> Middleware:
        """The middleware storing and replaying answers to keyed POSTs under ``/v1/``."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            key = request.headers.get(HEADER)
            if key is None or request.method != "POST" or not request.path.startswith("/v1/"):
                return await handler(request)
            if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
                raise InvalidInput(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters")
            if key in self._in_flight:
                raise KeyInUse(f"a request with this {HEADER} is still being processed")
            fingerprint = _fingerprint(request, await request.read())
            stored = self.lookup(key)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise KeyReused(f"this {HEADER} was used for a different request", key=key)
                replay = web.Response(
                    status=stored.status, body=stored.body, content_type=stored.content_type
                )
                replay.headers[REPLAYED_HEADER] = "true"
                return replay
            self._in_flight.add(key)
            try:
                try:
                    response = await handler(request)
                except SandboxError as exc:
                    if not exc.replayable:
                        raise
                    response = render_error(exc)
                if isinstance(response, web.Response) and isinstance(response.body, bytes):
                    self.store(
                        key,
                        StoredAnswer(
                            fingerprint,
                            response.status,
                            response.body,
                            response.content_type,
                            time.monotonic(),
                        ),
                    )
                return response
            finally:
                self._in_flight.discard(key)

        return middleware


def _fingerprint(request: web.Request, body: bytes) -> bytes:
    try:
        canonical = orjson.dumps(orjson.loads(body or b"{}"), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()
