"""Bearer tokens (``pyorder.auth.TokenIssuer``): the optional ``account_created`` claim reaches
the principal in ms, is not part of who the principal is, and a malformed one is refused."""

import jwt
import pytest

from pyorder.auth import Principal, Role, TokenIssuer
from pyorder.kernel.errors import Unauthorized
from pyorder.server.main import mint

SECRET = "s" * 40


def test_the_account_created_claim_reaches_the_principal_in_ms() -> None:
    issuer = TokenIssuer(SECRET)
    who = issuer.bearer("Bearer " + issuer.mint(Role.BUYER, "alice", account_created_s=1_700_000))
    assert who.account_created_ms == 1_700_000_000
    assert who == Principal(Role.BUYER, "alice")  # the same buyer, with or without the claim
    plain = issuer.bearer("Bearer " + issuer.mint(Role.BUYER, "alice"))
    assert plain.account_created_ms is None


@pytest.mark.parametrize("claim", ["2024-01-01", -1, 1.5, True])
def test_a_malformed_account_created_claim_is_refused(claim: object) -> None:
    token = jwt.encode(
        {"sub": "alice", "role": "buyer", "exp": 2**33, "account_created": claim}, SECRET, "HS256"
    )
    with pytest.raises(Unauthorized, match="account_created"):
        TokenIssuer(SECRET).bearer("Bearer " + token)


def test_pyorder_token_mints_the_claim(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    mint(
        ["--data-dir", str(tmp_path), "--role", "buyer", "--sub", "bob", "--account-created", "42"]
    )
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["account_created"]) == ("bob", 42)
