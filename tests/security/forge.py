"""Byte-level JWT crafting for the forgery suite.

No JWT library touches these tokens: headers and payloads are JSON text written by
hand (so duplicate members, odd number literals and non-UTF-8 bytes survive), the
segments are base64url-encoded here, and signatures come straight from `hmac` and
`cryptography`. A library would normalise exactly the inputs these tests are about.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = [
    "KeyPair",
    "b64std",
    "b64url",
    "jwk_of",
    "members",
    "new_keypair",
    "self_signed_cert_der",
    "signer_for",
    "token",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
Signer = Callable[[bytes], bytes]

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_HMAC_DIGESTS = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def b64url(data: bytes | str) -> str:
    """RFC 7515 base64url without padding."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64std(data: bytes | str) -> str:
    """Standard base64 ('+', '/', '=' padding): what a JWS must NOT contain."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def members(pairs: Iterable[tuple[str, Any]], *, raw: dict[str, str] | None = None) -> str:
    """A JSON object written member by member, so names may repeat.

    Args:
        pairs: (name, value) in order; values are JSON-encoded.
        raw: name -> JSON text inserted verbatim (e.g. ``1e400``), appended after `pairs`.
    """
    parts = [f"{json.dumps(name)}:{json.dumps(value)}" for name, value in pairs]
    parts += [f"{json.dumps(name)}:{text}" for name, text in (raw or {}).items()]
    return "{" + ",".join(parts) + "}"


def token(
    header: str | bytes, payload: str | bytes, signer: Signer | None = None, *, signature: bytes | None = None
) -> str:
    """`b64(header).b64(payload).b64(sig)`; `sig` from `signer` over the signing input, else `signature`, else empty."""
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    if signer is not None:
        signature = signer(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature or b'')}"


@dataclass(frozen=True)
class KeyPair:
    """An asymmetric key with its PEM files (the service reads keys from files)."""

    kind: str  # "RSA", "EC", "OKP"
    private: PrivateKey
    private_file: Path
    public_file: Path

    @property
    def public_pem(self) -> bytes:
        return self.public_file.read_bytes()


def new_keypair(kind: str, directory: Path, name: str) -> KeyPair:
    """Generate an RSA-2048, EC P-256 or Ed25519 key and write it as PKCS#8 / SPKI PEM."""
    private: PrivateKey
    if kind == "RSA":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "EC":
        private = ec.generate_private_key(ec.SECP256R1())
    elif kind == "OKP":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(kind)
    private_file, public_file = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    private_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_file.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return KeyPair(kind, private, private_file, public_file)


def signer_for(alg: str, key: bytes | PrivateKey) -> Signer:
    """A raw JWS signer for `alg`: HMAC over bytes, or RSA/ECDSA/EdDSA over a private key."""
    bits = alg[-3:]
    if alg.startswith("HS"):
        assert isinstance(key, bytes)
        secret, digest = key, _HMAC_DIGESTS[bits]
        return lambda data: hmac.new(secret, data, digest).digest()
    if alg.startswith("RS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        rsa_key = key
        return lambda data: rsa_key.sign(data, padding.PKCS1v15(), _HASHES[bits]())
    if alg.startswith("PS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        pss_key = key
        pss = padding.PSS(mgf=padding.MGF1(_HASHES[bits]()), salt_length=int(bits) // 8)
        return lambda data: pss_key.sign(data, pss, _HASHES[bits]())
    if alg.startswith("ES"):
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        ec_key, size = key, (key.curve.key_size + 7) // 8

        def sign_ec(data: bytes) -> bytes:
            # JWS wants the raw r || s, not the DER that cryptography returns.
            r, s = decode_dss_signature(ec_key.sign(data, ec.ECDSA(_HASHES[bits]())))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    if alg == "EdDSA":
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign
    raise ValueError(alg)


def jwk_of(key: PrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of `key` (for `jwk` headers and a JWKS behind `jku`)."""

    def n(value: int, length: int | None = None) -> str:
        return b64url(value.to_bytes(length or (value.bit_length() + 7) // 8, "big"))

    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        return {"kty": "RSA", "kid": kid, "n": n(numbers.n), "e": n(numbers.e)}
    if isinstance(public, ec.EllipticCurvePublicKey):
        point = public.public_numbers()
        return {"kty": "EC", "kid": kid, "crv": "P-256", "x": n(point.x, 32), "y": n(point.y, 32)}
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64url(raw)}


def self_signed_cert_der(key: PrivateKey) -> bytes:
    """A self-signed certificate for `key` (an `x5c` chain of one attacker certificate)."""
    import datetime as dt

    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "attacker")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest).public_bytes(serialization.Encoding.DER)
