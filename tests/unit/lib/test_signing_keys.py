from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from auth_service.lib.crypto.keys import generate, import_public, unwrap_private

WRAP = b"\x07" * 32


def test_no_kid_reads_as_a_command_line_option() -> None:
    """The kid is the key's RFC 7638 thumbprint, base64url: one in 64 starts with "-", which
    `just keys retire KID` would take for an option. 300 keys: without the rule, one such kid
    appears in 99 runs of 100."""
    kids = [generate("ES256", WRAP).kid for _ in range(300)]
    assert len(set(kids)) == 300 and not any(kid.startswith("-") for kid in kids)


@pytest.mark.parametrize(
    "algorithm", ["ES256", "Ed25519"]
)  # RS256: tests/integration/oauth (3072-bit keys are slow to make)
def test_a_made_key_is_published_without_its_private_half_and_unwraps_only_with_its_kid(algorithm: str) -> None:
    made = generate(algorithm, WRAP)
    assert made.public_jwk["kid"] == made.kid and made.public_jwk["alg"] == algorithm
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(made.public_jwk)
    private = unwrap_private(algorithm, made.kid, made.private_key, WRAP)
    assert private.is_private and import_public(made.public_jwk).thumbprint() == made.kid
    with pytest.raises(InvalidTag):
        unwrap_private(algorithm, made.kid + "x", made.private_key, WRAP)
