"""Stripe-style ``Idempotency-Key`` for every POST that creates or changes something.

The first response to a key is stored *in the same transaction* as the request's effects, and
replayed for 24 hours (``Config.idempotency_retention_ms``) with ``Idempotent-Replayed:
true``; the same key with a different request (method, path, query or parameters) is 422; a
duplicate while the first is still running is 409. Keys are scoped to the caller, so two
callers never see each other's responses. Failures of our own (5xx) are not stored: nothing
happened, and a retry runs again.

As Stripe does, requests are compared by their parameters, not their bytes: a JSON body is
fingerprinted in a canonical form (parsed, keys sorted, no whitespace), so the same request
re-encoded by a client's retry (keys reordered, re-indented) replays rather than being refused.

Keys in flight are kept in memory, per process. In cluster mode (several nodes on one
PostgreSQL) a node also claims the key in the database before it runs the request, in the
statement that reads the stored response (``pyorder.storage.key_claims``): the same key sent to
two nodes runs on one, the other answers 409 while it runs and replays it after. Solo mode has
no claim, and no extra statement.
"""

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import msgspec
import orjson
from aiohttp import web

from pyorder.auth import Principal
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import Conflict, DomainError, InvalidInput
from pyorder.model import IdempotencyRecord
from pyorder.platform import Platform
from pyorder.server.bodies import ErrorBody, ErrorOut
from pyorder.server.statuses import status_of
from pyorder.storage.base import StorageError

MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"

log = logging.getLogger(__name__)

Effect = Callable[[Principal, bytes], Awaitable[tuple[int, object]]]
"""Runs a request: validates, applies and *stages* its effects (no awaiting durability),
and returns (status, response payload); a ``bytes`` payload is the JSON body, already encoded."""


class KeyInFlight(Conflict):
    code = "idempotency_key_in_use"


class KeyReused(InvalidInput):
    code = "idempotency_key_reused"


class Idempotency:
    def __init__(self, platform: Platform, cache_size: int = 100_000) -> None:
        self._platform = platform
        self._in_flight: set[tuple[str, str]] = set()
        self._recent: OrderedDict[tuple[str, str], IdempotencyRecord] = OrderedDict()
        self._cache_size = cache_size

    async def handle(self, request: web.Request, who: Principal, effect: Effect) -> web.Response:
        body = await request.read()
        key = request.headers.get(HEADER)
        if key is None:
            try:
                status, payload = await effect(who, body)
            except DomainError:
                # A refusal may still have staged something (an order found expired on the
                # spot): it is answered only once that is durable.
                await self._platform.intake.durable()
                raise
            await self._platform.intake.durable()
            return _respond(status, _encode(payload))
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidInput(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters")
        scope = (who.key, key)
        if scope in self._in_flight:
            raise KeyInFlight(f"a request with this {HEADER} is still being processed")
        fingerprint = _fingerprint(request, body)
        self._in_flight.add(scope)
        claim: tuple[int, int] | None = None  # (node, epoch) of our claim in the database
        staged = False  # our response is in a batch: it may commit, so the claim stays
        try:
            if self._platform.config.cluster:
                stored, claim = await self._claim(scope)
            else:
                stored = await self._lookup(scope)
            if stored is not None:
                if not _same_request(stored.fingerprint, fingerprint, request, body):
                    raise KeyReused(f"this {HEADER} was used for a different request")
                response = _respond(stored.status, stored.body)
                response.headers[REPLAYED] = "true"
                return response
            status, payload = await _run(effect, who, body)
            encoded = _encode(payload)
            record = IdempotencyRecord(who.key, key, fingerprint, status, encoded, now_ms())
            self._platform.intake.batch.idempotency.append(record)
            staged = True
            try:
                await self._platform.intake.durable()
            except Exception:
                # The commit failed: nothing of it was written (or, its reply lost, the stored
                # response is what a retry will find), so the key is free again.
                staged = False
                raise
            self._remember(scope, record)
            return _respond(status, encoded)
        finally:
            self._in_flight.discard(scope)
            if claim is not None and not staged:
                await self._release(scope, claim)

    async def _lookup(self, scope: tuple[str, str]) -> IdempotencyRecord | None:
        record = self._recent.get(scope)
        if record is None:
            record = await self._platform.store.get_idempotency(*scope)
        if record is None:
            return None
        cutoff = now_ms() - self._platform.config.idempotency_retention_ms
        if record.created_ms < cutoff:
            # Expired: the key may be used afresh, but its old row must go before the new one
            # is written in the same key's place.
            self._recent.pop(scope, None)
            await self._platform.store.purge_idempotency(cutoff)
            return None
        return record

    async def _claim(
        self, scope: tuple[str, str]
    ) -> tuple[IdempotencyRecord | None, tuple[int, int] | None]:
        """Cluster mode: the key's stored response, or this node's claim of the key in the
        database (node, epoch), in the one round trip a lookup costs; ``KeyInFlight`` while
        another live node runs it (``pyorder.storage.key_claims``)."""
        cutoff = now_ms() - self._platform.config.idempotency_retention_ms
        record = self._recent.get(scope)
        if record is not None and record.created_ms >= cutoff:
            return record, None
        node, epoch = self._platform.claim.node, self._platform.claim.epoch
        found = await self._platform.store.claim_idempotency(*scope, node, epoch, cutoff)
        if found.stored is not None and found.stored.created_ms >= cutoff:
            return found.stored, None
        if not found.claimed:
            raise KeyInFlight(
                f"a request with this {HEADER} is still being processed (on another node)"
            )
        if found.stored is not None:
            # Expired: its old row must go before the new one is written in its place.
            self._recent.pop(scope, None)
            try:
                await self._platform.store.purge_idempotency(cutoff)
            except BaseException:
                await self._release(scope, (node, epoch))
                raise
        return None, (node, epoch)

    async def _release(self, scope: tuple[str, str], claim: tuple[int, int]) -> None:
        """Give up our claim of a key whose request failed (5xx: nothing written). A release
        that fails leaves a claim this node takes over itself when the key comes back, and
        other nodes after ``key_claims.CLAIM_TTL_MS``."""
        try:
            await self._platform.store.release_idempotency(*scope, *claim)
        except StorageError as e:
            log.warning("releasing an %s failed: %s", HEADER, e)

    def _remember(self, scope: tuple[str, str], record: IdempotencyRecord) -> None:
        self._recent[scope] = record
        while len(self._recent) > self._cache_size:
            self._recent.popitem(last=False)


async def _run(effect: Effect, who: Principal, body: bytes) -> tuple[int, object]:
    try:
        return await effect(who, body)
    except DomainError as exc:
        status = status_of(exc)
        if status >= 500:
            raise
        return status, ErrorOut(ErrorBody(exc.code, exc.message, dict(exc.details)))


def _encode(payload: object) -> bytes:
    return payload if isinstance(payload, bytes) else msgspec.json.encode(payload)


def _respond(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


CANONICAL = "c1:"
"""Prefix of fingerprints over the canonical form; stored ones without it hash the raw bytes
(written before the canonical form, kept comparable for their 24 hours)."""


def _fingerprint(request: web.Request, body: bytes) -> str:
    """Hash of method, path, sorted query and the body in canonical form (``_canonical``)."""
    digest = hashlib.sha256()
    query = "&".join(f"{k}={v}" for k, v in sorted(request.query.items()))
    for part in (request.method.encode(), request.path.encode(), query.encode(), _canonical(body)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return CANONICAL + digest.hexdigest()


def _canonical(body: bytes) -> bytes:
    """A JSON body parsed and written again with sorted keys and no whitespace (orjson: ~2 µs
    per order of a body, and only for requests with a key); a body that is not JSON (refused
    anyway) as it is, tagged apart."""
    try:
        return b"j" + orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return b"b" + body


def _same_request(stored: str, fingerprint: str, request: web.Request, body: bytes) -> bool:
    if stored.startswith(CANONICAL):
        return stored == fingerprint
    return stored == _raw_fingerprint(request, body)


def _raw_fingerprint(request: web.Request, body: bytes) -> str:
    """The fingerprint written before the canonical form: method, path and the raw bytes."""
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0")
    digest.update(request.path.encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()
