"""OAuth's own wire format, and the small checks every endpoint shares.

The provider's endpoints answer errors as RFC 6749 §5.2 says (`{"error", "error_description"}`,
400, or 401 with `WWW-Authenticate` for a client that failed to authenticate), the one deliberate
exception to the service's envelope: every OAuth client library parses this and nothing else.
The authorization endpoint answers in the redirect (§4.1.2.1) once the client and its redirect
URI are known, and with a page otherwise: it never redirects to a URI it has not matched.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Any
from urllib.parse import unquote

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core.util import create_half_hash
from litestar import Request, Response

__all__ = [
    "NO_STORE",
    "OAuthError",
    "at_hash",
    "client_credentials_of",
    "oauth_error_response",
    "pkce_matches",
    "scope_list",
]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 7636 §4.1: 43-128 characters of [A-Z a-z 0-9 - . _ ~].
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")  # the S256 challenge: 32 bytes, base64url, no padding
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §3.3 scope-token
MAX_PARAMETER = 2048


class OAuthError(Exception):
    """An OAuth error: `error` is RFC 6749's code, `description` a human sentence (never a secret)."""

    def __init__(self, error: str, description: str, *, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}


def invalid_client() -> OAuthError:
    """RFC 6749 §5.2: a client that failed to authenticate (unknown, wrong secret, wrong method)."""
    return OAuthError(
        "invalid_client",
        "Client authentication failed",
        status=401,
        headers={"WWW-Authenticate": 'Basic realm="oauth2", charset="UTF-8"'},
    )


def oauth_error_response(exc: OAuthError) -> Response[dict[str, str]]:
    return Response(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers={**NO_STORE, **exc.headers},
    )


def scope_list(scope: str | None) -> list[str]:
    """A `scope` parameter as its tokens, in order, without repeats; invalid_scope if malformed."""
    if not scope:
        return []
    tokens = scope.split(" ")
    if any(not _SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise OAuthError("invalid_scope", "The scope is malformed")
    return list(dict.fromkeys(tokens))


def pkce_matches(challenge: str, verifier: str) -> bool:
    """RFC 7636 §4.6 with S256 (the only method we accept), in constant time."""
    if not _VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(create_s256_code_challenge(verifier), challenge)


def valid_challenge(challenge: str) -> bool:
    return bool(_CHALLENGE.fullmatch(challenge))


def at_hash(access_token: str, algorithm: str) -> str:
    """OIDC Core §3.1.3.6: the left half of the token's hash with the ID token's algorithm's hash
    (SHA-256 for ES256/RS256, SHA-512 for Ed25519, which authlib still calls EdDSA)."""
    half = create_half_hash(access_token, "EdDSA" if algorithm == "Ed25519" else algorithm)
    assert half is not None, f"no half hash for {algorithm}"
    return half.decode() if isinstance(half, bytes) else str(half)


def client_credentials_of(request: Request[Any, Any, Any], form: dict[str, str]) -> tuple[str, str | None, str]:
    """The client's id, secret and method (`client_secret_basic`, `client_secret_post`, `none`).

    Raises:
        OAuthError: invalid_request for both methods at once or a malformed header; invalid_client
            for a Basic header that does not decode.
    """
    header = request.headers.get("authorization")
    posted_id, posted_secret = form.get("client_id"), form.get("client_secret")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise invalid_client()
        if posted_secret is not None:
            raise OAuthError("invalid_request", "Use one client authentication method, not two")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise invalid_client() from None
        raw_id, colon, raw_secret = decoded.partition(":")
        if not colon:
            raise invalid_client()
        # RFC 6749 §2.3.1: both are form-urlencoded inside the header.
        client_id, secret = unquote(raw_id.replace("+", " ")), unquote(raw_secret.replace("+", " "))
        if posted_id is not None and posted_id != client_id:
            raise OAuthError("invalid_request", "client_id differs from the authenticated client")
        return client_id, secret, "client_secret_basic"
    if not posted_id:
        raise invalid_client()
    if posted_secret is not None:
        return posted_id, posted_secret, "client_secret_post"
    return posted_id, None, "none"


def single(form: dict[str, list[str]], name: str) -> str | None:
    """A parameter that must appear at most once (RFC 6749 §3.1), bounded in length."""
    values = form.get(name) or []
    if len(values) > 1:
        raise OAuthError("invalid_request", f"{name} is repeated")
    if not values:
        return None
    value = values[0]
    if len(value) > MAX_PARAMETER or "\x00" in value:
        raise OAuthError("invalid_request", f"{name} is malformed")
    return value
