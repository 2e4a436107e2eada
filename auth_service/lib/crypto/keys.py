"""Managed signing keys: made, wrapped, published and chosen, with no I/O (lib/keyring.py reads
and writes them).

A key's life is four states on a schedule every instance computes from the same timestamps, so
no instance has to be told when to switch:

- `next`: published in the JWKS, not signing, until `activates_at` (KEY_ROTATION_DELAY after
  `just keys rotate`, longer than the JWKS cache lifetime: every relying party has the key
  before the first token it signs);
- `active`: the newest key whose `activates_at` has passed signs;
- `retiring`: a newer key took over at `retired_at`; still published until `removes_at`, when
  the last token it signed has expired;
- `removed`: unpublished, the private key erased; tokens it signed are refused.

The private key is stored only as nonce || AES-GCM ciphertext of its PEM under the
`signing-key-wrap` purpose key, the kid as associated data (a ciphertext moved to another row
does not decrypt). The kid is the RFC 7638 thumbprint of the public key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey, OKPKey, RSAKey

__all__ = [
    "ALGORITHMS",
    "KeyMaterial",
    "KeySet",
    "ManagedKey",
    "PublicKey",
    "generate",
    "unwrap_private",
]

Algorithm = Literal["ES256", "RS256", "Ed25519"]
# ES256 is the default: small signatures, fast, accepted by every OIDC library. Ed25519 is the
# fully-specified name of RFC 9864 (which deprecates `EdDSA`).
ALGORITHMS: tuple[Algorithm, ...] = ("ES256", "RS256", "Ed25519")
State = Literal["next", "active", "retiring", "removed"]
PublicKey = ECKey | RSAKey | OKPKey
_NONCE_BYTES = 12
_RSA_BITS = 3072


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A freshly made key, as stored: its kid, public JWK and wrapped private key."""

    kid: str
    algorithm: str
    public_jwk: dict[str, Any]
    private_key: bytes


def _key_class(algorithm: str) -> type[ECKey] | type[RSAKey] | type[OKPKey]:
    if algorithm == "ES256":
        return ECKey
    if algorithm == "RS256":
        return RSAKey
    if algorithm == "Ed25519":
        return OKPKey
    raise ValueError(f"unsupported signing key algorithm {algorithm!r}")


def generate(algorithm: str, wrap_key: bytes) -> KeyMaterial:
    """A new key pair for `algorithm`, its private half wrapped with `wrap_key`."""
    cls = _key_class(algorithm)
    key: PublicKey
    while True:
        if cls is ECKey:
            key = ECKey.generate_key("P-256")
        elif cls is RSAKey:
            key = RSAKey.generate_key(_RSA_BITS)
        else:
            key = OKPKey.generate_key("Ed25519")
        kid = key.thumbprint()
        if not kid.startswith("-"):  # one in 64: a command line would take `just keys retire -…` for an option
            break
    public = {**key.as_dict(private=False), "kid": kid, "alg": algorithm, "use": "sig"}
    pem = key.as_pem(private=True)
    nonce = os.urandom(_NONCE_BYTES)
    wrapped = nonce + AESGCM(wrap_key).encrypt(nonce, pem, kid.encode())
    return KeyMaterial(kid=kid, algorithm=algorithm, public_jwk=public, private_key=wrapped)


def unwrap_private(algorithm: str, kid: str, wrapped: bytes, wrap_key: bytes) -> PublicKey:
    """The private key of a stored row.

    Raises:
        cryptography.exceptions.InvalidTag: another wrap key (SECRET_KEY changed) or another row's ciphertext.
    """
    pem = AESGCM(wrap_key).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], kid.encode())
    return _key_class(algorithm).import_key(pem)


def import_public(jwk: dict[str, Any]) -> PublicKey:
    return _key_class(str(jwk["alg"])).import_key({k: v for k, v in jwk.items() if k not in ("alg", "use", "kid")})


@dataclass(frozen=True, slots=True)
class ManagedKey:
    """One row of `signing_keys`, as an instance holds it."""

    kid: str
    algorithm: str
    public_jwk: dict[str, Any]
    activates_at: dt.datetime
    retired_at: dt.datetime | None = None
    removes_at: dt.datetime | None = None
    removed_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    # The private key, present while it may still sign (next or active).
    private: PublicKey | None = field(default=None, compare=False, repr=False)
    public: PublicKey | None = field(default=None, compare=False, repr=False)

    def state(self, now: dt.datetime) -> State:
        """The state at `now`, from the timestamps alone (the stored state may lag by a refresh)."""
        if self.removed_at is not None and self.removed_at <= now:
            return "removed"
        if self.removes_at is not None and self.removes_at <= now:
            return "removed"
        if self.retired_at is not None and self.retired_at <= now:
            return "retiring"
        if self.activates_at <= now:
            return "active"
        return "next"


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys an instance knows: the newest active one signs, every published one verifies."""

    keys: tuple[ManagedKey, ...] = ()
    generation: int = 0
    _by_kid: dict[str, ManagedKey] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, keys: list[ManagedKey], generation: int) -> KeySet:
        ordered = tuple(sorted(keys, key=lambda k: k.activates_at, reverse=True))
        return cls(ordered, generation, {k.kid: k for k in ordered})

    def signer(self, now: dt.datetime) -> ManagedKey | None:
        """The newest key whose activation has passed and that is neither retired nor removed
        (a newer active key makes the older one retiring on every instance at the same moment)."""
        for key in self.keys:  # newest activation first
            if key.activates_at <= now:
                if key.state(now) == "active" and key.private is not None:
                    return key
                return None  # the newest activated key is retired or removed: nothing may sign with an older one
        return None

    def verifying(self, kid: str, now: dt.datetime) -> ManagedKey | None:
        """The key `kid` names if it is published at `now` (next, active or retiring)."""
        key = self._by_kid.get(kid)
        if key is None or key.state(now) == "removed":
            return None
        return key

    def published(self, now: dt.datetime) -> list[ManagedKey]:
        return [k for k in self.keys if k.state(now) != "removed"]

    def jwks(self, now: dt.datetime) -> bytes:
        """The JWK Set document (RFC 7517) of every published key, newest first."""
        return json.dumps({"keys": [k.public_jwk for k in self.published(now)]}, separators=(",", ":")).encode()
