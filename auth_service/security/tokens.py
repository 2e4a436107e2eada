"""Access tokens (JWT through joserfc) and opaque refresh tokens.

The only module that touches joserfc. Verification pins the configured algorithm,
requires `exp`, `iat`, `sub`, `jti`, `sid`, checks `iss` and `aud` exactly, and
accepts only our `kid` and the `at+jwt` type (RFC 9068).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from pathlib import Path

import msgspec
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

__all__ = [
    "AccessClaims",
    "TokenExpiredError",
    "TokenInvalidError",
    "TokenService",
    "family_of",
    "hash_refresh_token",
    "new_refresh_token",
]

ACCESS_TOKEN_TYPE = "at+jwt"
# Real tokens are well under 1 KiB; anything huge is refused before parsing.
MAX_TOKEN_LENGTH = 4096
_ACCEPTED_TYPES = {"at+jwt", "application/at+jwt"}

AnyKey = OctKey | RSAKey | ECKey | OKPKey


class TokenInvalidError(Exception):
    """The token is malformed, forged, of the wrong kind or for someone else."""


class TokenExpiredError(Exception):
    """The token was good but its `exp` has passed."""


class AccessClaims(msgspec.Struct, frozen=True):
    """The claims of a verified access token."""

    sub: str
    username: str
    roles: list[str]
    iat: int
    exp: int
    jti: str
    sid: str
    iss: str
    aud: str | list[str]


class TokenService:
    """Issues and verifies access tokens with one key and one algorithm.

    Args:
        algorithm: the JWS algorithm, pinned for verification.
        secret: the HMAC secret (HS*), or "" for asymmetric algorithms.
        private_key_file: PEM private key (asymmetric algorithms).
        public_key_file: PEM public key; derived from the private key when empty.
        key_id: the `kid`; derived from the key when empty.
        issuer: `iss` written and required.
        audience: `aud` written and required.
        access_ttl: access token lifetime in seconds.
    """

    def __init__(
        self,
        *,
        algorithm: str,
        secret: str,
        private_key_file: str,
        public_key_file: str,
        key_id: str,
        issuer: str,
        audience: str,
        access_ttl: int,
    ) -> None:
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self._signing_key, self._verifying_key = _load_keys(algorithm, secret, private_key_file, public_key_file)
        self.key_id = key_id or _derive_kid(self._verifying_key, secret)
        # HMAC key for deriving a refresh token's successor, derived from (never equal to) the signing secret.
        material = secret.encode() if algorithm.startswith("HS") else Path(private_key_file).read_bytes()
        self._rotation_key = hmac.new(material, b"refresh-rotation", hashlib.sha256).digest()
        self._registry = JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
            sid={"essential": True},
        )

    def issue_access(
        self, *, user_id: str, username: str, roles: list[str], session_id: str
    ) -> tuple[str, AccessClaims]:
        now = int(time.time())
        claims = AccessClaims(
            sub=user_id,
            username=username,
            roles=list(roles),
            iat=now,
            exp=now + self.access_ttl,
            jti=uuid.uuid4().hex,
            sid=session_id,
            iss=self.issuer,
            aud=self.audience,
        )
        header = {"alg": self.algorithm, "kid": self.key_id, "typ": ACCESS_TOKEN_TYPE}
        token = jwt.encode(header, msgspec.structs.asdict(claims), self._signing_key, algorithms=[self.algorithm])
        return token, claims

    def verify_access(self, token: str) -> AccessClaims:
        """Verify signature, header and claims.

        Raises:
            TokenExpiredError: `exp` has passed.
            TokenInvalidError: anything else is wrong.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise TokenInvalidError
        try:
            decoded = jwt.decode(token, self._verifying_key, algorithms=[self.algorithm])
            header = decoded.header
            if header.get("kid") != self.key_id or str(header.get("typ", "")).lower() not in _ACCEPTED_TYPES:
                raise TokenInvalidError
            self._registry.validate(decoded.claims)
            return msgspec.convert(decoded.claims, AccessClaims)
        except ExpiredTokenError:
            raise TokenExpiredError from None
        except (JoseError, ValueError, TypeError, msgspec.ValidationError):
            raise TokenInvalidError from None

    def successor_of(self, refresh_token: str) -> str:
        """The token that replaces `refresh_token` on rotation (same family prefix).

        Derived, not random, so a repeat within the grace period can be answered with
        the same successor while only hashes are stored.
        """
        family, _, _ = refresh_token.partition(".")
        digest = hmac.new(self._rotation_key, refresh_token.encode(), hashlib.sha256).digest()
        return f"{family}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def new_refresh_token(family_id: uuid.UUID) -> str:
    """`<family hex>.<256 random bits>`: the family is readable (for per-session limits), the rest is secret."""
    return f"{family_id.hex}.{secrets.token_urlsafe(32)}"


def family_of(refresh_token: str) -> str | None:
    """The family id a refresh token claims, or None when it is not of our shape."""
    family, dot, secret = refresh_token.partition(".")
    if not dot or len(family) != 32 or not secret or any(c not in "0123456789abcdef" for c in family):
        return None
    return family


def hash_refresh_token(token: str) -> str:
    # Refresh tokens carry 256 random bits, so a fast hash is enough to make a DB leak useless.
    return hashlib.sha256(token.encode()).hexdigest()


def _load_keys(algorithm: str, secret: str, private_file: str, public_file: str) -> tuple[AnyKey, AnyKey]:
    if algorithm.startswith("HS"):
        key = OctKey.import_key(secret.encode())
        return key, key
    key_class: type[RSAKey] | type[ECKey] | type[OKPKey]
    key_class = RSAKey if algorithm[:2] in ("RS", "PS") else ECKey if algorithm.startswith("ES") else OKPKey
    private = key_class.import_key(Path(private_file).read_bytes())
    public = key_class.import_key(Path(public_file).read_bytes()) if public_file else private
    return private, public


def _derive_kid(key: AnyKey, secret: str) -> str:
    if isinstance(key, OctKey):
        return hmac.new(secret.encode(), b"kid", hashlib.sha256).hexdigest()[:16]
    return key.thumbprint()[:16]
