"""Who is calling: HS256 JWT bearer tokens carrying a role and a subject (PyJWT).

PyJWT is the well-kept standard for this; we only choose the claims: ``sub`` (the principal's
id), ``role`` (buyer, merchant or admin), ``iat`` and ``exp`` (UTC seconds), and optionally
``account_created`` (UTC seconds): when the buyer's account was made, which the issuer (the
shop's identity provider) knows and the platform, keeping no accounts, does not. Risk control
reads the account's age from it (``docs/risk.md``).
"""

import contextlib
import functools
import hashlib
import os
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import jwt

from pyorder.kernel.errors import Forbidden, Unauthorized

SYSTEM = "system"
"""Who is recorded as asking for what the platform does on its own (a refund on a cancel, a
lightning refund)."""


class Role(StrEnum):
    BUYER = "buyer"
    MERCHANT = "merchant"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    subject: str
    account_created_ms: int | None = field(default=None, compare=False)
    """When the account was made (ms since the Unix epoch, UTC), from the token's
    ``account_created`` claim; None without one. Not part of who the principal is."""

    @property
    def key(self) -> str:
        """Namespace for idempotency keys: one caller's key never collides with another's."""
        return f"{self.role}:{self.subject}"

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs the role {allowed}; the token has {self.role.value}")


@functools.lru_cache(maxsize=65536)
def buyer_number(subject: str) -> int:
    """A stable 63-bit number for a buyer subject (the core counts purchase limits by it)."""
    digest = hashlib.blake2b(subject.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


class TokenIssuer:
    """Mints and verifies tokens with one shared secret."""

    ALGORITHM = "HS256"

    def __init__(self, secret: str, cache_size: int = 100_000) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters")
        self._secret = secret
        # Verifying a signature costs more than the rest of a small request: remember the
        # Authorization values already verified, until their tokens expire.
        self._verified: dict[str, tuple[Principal, int]] = {}
        self._cache_size = cache_size

    def mint(
        self,
        role: Role,
        subject: str,
        ttl_s: int = 24 * 3600,
        account_created_s: int | None = None,
    ) -> str:
        """A token for ``subject`` in ``role``, valid ``ttl_s`` seconds; ``account_created_s``:
        when the account was made (UTC seconds), carried as the ``account_created`` claim."""
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": subject,
            "role": role.value,
            "iat": now,
            "exp": now + ttl_s,
        }
        if account_created_s is not None:
            claims["account_created"] = account_created_s
        return jwt.encode(claims, self._secret, algorithm=self.ALGORITHM)

    def bearer(self, header: str) -> Principal:
        """The principal of an ``Authorization`` header's value, ``Bearer <token>``; raises
        Unauthorized otherwise. Remembered by the whole value until the token expires: one
        lookup per request."""
        known = self._verified.get(header)
        if known is not None and known[1] > time.time():
            return known[0]
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <token>'")
        principal, expires = self._verify(token.strip())
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[header] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, int]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.ALGORITHM],
                options={"require": ["sub", "role", "exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        try:
            role = Role(claims["role"])
        except ValueError as exc:
            raise Unauthorized(f"unknown role {claims['role']!r}") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 200:
            raise Unauthorized("the token's subject must be a non-empty string")
        created = claims.get("account_created")
        if created is not None and (
            isinstance(created, bool) or not isinstance(created, int) or created < 0
        ):
            raise Unauthorized(
                "the token's account_created must be whole seconds since the Unix epoch"
            )
        created_ms = None if created is None else created * 1000
        return Principal(role, subject, created_ms), int(claims["exp"])


def load_or_create_secret(data_dir: Path, name: str = "token-secret") -> str:
    """A secret of the server's (by default the token secret), kept in the file ``name`` of
    the data directory, created (0600) on first use. Created whole and at once (written
    aside, then linked into place), so two processes starting together agree on one."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        aside = data_dir / f".{name}.{secrets.token_hex(8)}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(aside, path)
        finally:
            aside.unlink()
    return path.read_text().strip()
