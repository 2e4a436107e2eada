"""Access tokens (JWT through joserfc) and opaque refresh tokens.

With lib/crypto/keys.py (the managed keys), the only module that touches joserfc. Verification
pins the configured algorithm, requires `exp`, `iat`, `sub`, `jti`, `sid`, checks `iss` and `aud`
exactly, and accepts only the `at+jwt` type (RFC 9068) and our `kid`: the PEM key's, or with
managed keys one that is published now (next, active or retiring), of the pinned algorithm.

Before joserfc sees a token it must look exactly like one we issue (RFC 8725): three
non-empty base64url segments, a header of only `alg` (the configured one), `kid` (ours)
and `typ`, and header and payload that are strict UTF-8 JSON with no duplicate member
names. Nothing in a token ever selects or fetches a key (`jku`, `x5u`, `jwk`, `x5c`,
`crit`, `b64` … are refused), and time claims are integers within our own lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import msgspec
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from auth_service.lib.crypto.keys import ManagedKey

__all__ = [
    "AccessClaims",
    "KeySource",
    "SigningKeyUnavailable",
    "TokenExpiredError",
    "TokenInvalidError",
    "TokenService",
    "family_of",
    "hash_refresh_token",
    "key_file_problem",
    "new_refresh_token",
]

ACCESS_TOKEN_TYPE = "at+jwt"
# Real tokens are well under 1 KiB; anything huge is refused before parsing.
MAX_TOKEN_LENGTH = 4096
_ACCEPTED_TYPES = {"at+jwt", "application/at+jwt"}
# The header members we write; any other (jku, x5u, jwk, x5c, crit, b64, cty, …) is refused.
_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
_MAX_HEADER_SEGMENT = 512
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# NumericDate bounds for exp/iat/nbf: after the epoch, before year 10000 (datetime's limit).
_MAX_NUMERIC_DATE = 253402300799

AnyKey = OctKey | RSAKey | ECKey | OKPKey


class TokenInvalidError(Exception):
    """The token is malformed, forged, of the wrong kind or for someone else."""


class TokenExpiredError(Exception):
    """The token was good but its `exp` has passed."""


class SigningKeyUnavailable(Exception):
    """No managed key may sign now (every key was retired and none made since)."""


class KeySource(Protocol):
    """The managed signing keys (lib/keyring.py's KeyRing): read in memory, never waited on."""

    @property
    def generation(self) -> int: ...

    def signer(self) -> ManagedKey | None: ...

    def verifying(self, kid: str) -> ManagedKey | None: ...


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
    # How the login was proven (RFC 8176): ["pwd"], or ["pwd", "otp", "mfa"] after a second factor.
    # Tokens minted before the claim existed were password logins.
    amr: list[str] = msgspec.field(default_factory=lambda: ["pwd"])
    # Tokens minted through OAuth (RFC 9068 §2.2): the client they were granted to and its scopes.
    client_id: str | None = None
    scope: str | None = None


class TokenService:
    """Issues and verifies access tokens with one key and one algorithm.

    Args:
        algorithm: the JWS algorithm, pinned for verification.
        secret: the HMAC secret (HS*), or "" for asymmetric algorithms.
        private_key_file: PEM private key (asymmetric algorithms).
        public_key_file: PEM public key; derived from the private key when empty.
        key_id: the `kid`; derived from the key when empty.
        managed_keys: with an asymmetric algorithm and no PEM file: the managed keys sign (the
            newest active one) and verify (any published one whose algorithm is `algorithm`).
        issuer: `iss` written and required.
        audience: `aud` written and required.
        access_ttl: access token lifetime in seconds.
        successor_key: HMAC key of refresh-token successors (None: derived from the signing key).
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
        successor_key: bytes | None = None,
        managed_keys: KeySource | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self._managed = managed_keys if not algorithm.startswith("HS") and not private_key_file else None
        if self._managed is None:
            self._signing_key, self._verifying_key = _load_keys(algorithm, secret, private_key_file, public_key_file)
            self._key_id = key_id or _derive_kid(self._verifying_key, secret)
        # HMAC key of a refresh token's successor: the `refresh-successor` purpose key (derive.py);
        # without one, derived from the signing material as before purpose keys existed.
        if successor_key is None:
            material = secret.encode() if algorithm.startswith("HS") else Path(private_key_file).read_bytes()
            successor_key = hmac.new(material, b"refresh-rotation", hashlib.sha256).digest()
        self._rotation_key = successor_key
        self._registry = JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
            sid={"essential": True},
        )

    @property
    def managed(self) -> bool:
        return self._managed is not None

    @property
    def key_id(self) -> str:
        """The `kid` access tokens are signed with now."""
        if self._managed is None:
            return self._key_id
        key = self._managed.signer()
        return key.kid if key is not None else ""

    @property
    def generation(self) -> int:
        """Changes when the keys that verify do (a cache of verified claims must be dropped)."""
        return self._managed.generation if self._managed is not None else 0

    def _signing(self) -> tuple[AnyKey, str]:
        if self._managed is None:
            return self._signing_key, self._key_id
        key = self._managed.signer()
        if key is None or key.private is None:
            raise SigningKeyUnavailable
        return key.private, key.kid

    def issue_access(
        self,
        *,
        user_id: str,
        username: str,
        roles: list[str],
        session_id: str,
        amr: list[str] | None = None,
        client_id: str | None = None,
        scope: str | None = None,
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
            amr=list(amr or ["pwd"]),
            client_id=client_id,
            scope=scope,
        )
        signing_key, kid = self._signing()
        header = {"alg": self.algorithm, "kid": kid, "typ": ACCESS_TOKEN_TYPE}
        payload = msgspec.structs.asdict(claims)
        for name in ("client_id", "scope"):  # only on tokens granted through OAuth
            if payload[name] is None:
                del payload[name]
        token = jwt.encode(header, payload, signing_key, algorithms=[self.algorithm])
        return token, claims

    def verify_access(self, token: str) -> AccessClaims:
        """Verify signature, header and claims.

        Raises:
            TokenExpiredError: `exp` has passed.
            TokenInvalidError: anything else is wrong.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise TokenInvalidError
        segments = token.split(".")
        if len(segments) != 3 or not all(_SEGMENT.fullmatch(segment) for segment in segments):
            raise TokenInvalidError
        try:
            verifying_key = self._check_header(segments[0])
            signed = jws.deserialize_compact(token, verifying_key, algorithms=[self.algorithm])
            claims = _strict_json(signed.payload or b"")
            if not isinstance(claims, dict):
                raise TokenInvalidError
            _check_times(claims)
            self._registry.validate(claims)  # exp passed -> ExpiredTokenError
            if claims["exp"] - claims["iat"] > self.access_ttl:
                raise TokenInvalidError  # longer-lived than anything we mint
            if claims["aud"] != self.audience and claims["aud"] != [self.audience]:
                raise TokenInvalidError  # other audiences too: replayable elsewhere
            return msgspec.convert(claims, AccessClaims)
        except ExpiredTokenError:
            raise TokenExpiredError from None
        except (JoseError, ValueError, TypeError, KeyError, RecursionError, msgspec.ValidationError):
            raise TokenInvalidError from None

    def _check_header(self, segment: str) -> AnyKey:
        """The key that must have signed a token with this header; TokenInvalidError if none."""
        if len(segment) > _MAX_HEADER_SEGMENT:
            raise TokenInvalidError
        header = _strict_json(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        if not isinstance(header, dict) or not header.keys() <= _HEADER_MEMBERS:
            raise TokenInvalidError
        typ, kid = header.get("typ"), header.get("kid")
        if header.get("alg") != self.algorithm or not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
            raise TokenInvalidError
        if self._managed is None:
            if kid != self._key_id:
                raise TokenInvalidError
            return self._verifying_key
        # A published key (next, active or retiring) of the pinned algorithm; a removed one is unknown.
        key = self._managed.verifying(kid) if isinstance(kid, str) else None
        if key is None or key.algorithm != self.algorithm or key.public is None:
            raise TokenInvalidError
        return key.public

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


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member name")  # which one wins differs between parsers
    return members


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json(data: bytes) -> Any:
    """RFC 8259 JSON in UTF-8 only: no BOM, no UTF-16/32, no NaN/Infinity, no duplicate names."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_unique_members, parse_constant=_no_constant)


def _check_times(claims: dict[str, Any]) -> None:
    """`exp`, `iat`, `nbf` are integer NumericDates (no floats, booleans, strings), and `iat` < `exp`."""
    for name in ("exp", "iat", "nbf"):
        if name in claims and (type(claims[name]) is not int or not 0 < claims[name] <= _MAX_NUMERIC_DATE):
            raise TokenInvalidError
    if "exp" in claims and "iat" in claims and claims["exp"] <= claims["iat"]:
        raise TokenInvalidError


def key_file_problem(algorithm: str, private_file: str, public_file: str) -> tuple[str, str] | None:
    """Why the PEM files cannot sign and verify `algorithm`, as (variable, message); None when they can.

    Start-up calls this so a missing, unreadable, wrong-type or mismatched key is one clear line,
    not a traceback from the first request. Messages never include key material.
    """
    for name, path in (("JWT_PRIVATE_KEY_FILE", private_file), ("JWT_PUBLIC_KEY_FILE", public_file)):
        if path and not Path(path).is_file():
            return name, f"{path} is not a readable file"
    keys: list[AnyKey] = []
    for name, public in (("JWT_PRIVATE_KEY_FILE", ""), ("JWT_PUBLIC_KEY_FILE", public_file)):
        try:
            keys.append(_load_keys(algorithm, "", private_file, public)[1])
        except OSError as exc:
            return name, f"cannot be read ({exc.strerror})"
        except (JoseError, ValueError, TypeError):
            return name, f"is not a PEM key usable with {algorithm}"
    signing, verifying = keys
    if not signing.is_private:
        return "JWT_PRIVATE_KEY_FILE", "holds a public key; a private key is required"
    if isinstance(signing, RSAKey) and signing.raw_value.key_size < 2048:
        return "JWT_PRIVATE_KEY_FILE", "RSA keys need at least 2048 bits"
    try:
        probe = jws.serialize_compact({"alg": algorithm}, b"probe", signing, algorithms=[algorithm])
    except (JoseError, ValueError, TypeError):
        return "JWT_PRIVATE_KEY_FILE", f"is not a PEM key usable with {algorithm}"
    try:
        jws.deserialize_compact(probe, verifying, algorithms=[algorithm])
    except (JoseError, ValueError, TypeError):
        return "JWT_PUBLIC_KEY_FILE", "does not match JWT_PRIVATE_KEY_FILE"
    return None


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
