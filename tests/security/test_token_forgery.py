"""Forged and confused access tokens (RFC 8725, ASVS 5.0 V9) against the real HTTP API.

Every token here is built byte by byte (tests/security/forge.py): hand-written JSON,
our own base64url, signatures from `hmac` / `cryptography`. Each must be answered
401 with the error envelope, AUTH_TOKEN_INVALID, on GET /verify and POST /logout.

Why AUTH_TOKEN_INVALID exactly: a token whose signature and claims pass but whose
`sub` is no user answers AUTH_TOKEN_REVOKED, so INVALID proves the token itself was
refused. The positive controls sign with the same helpers and the real key and get
200, so the harness can make a token the service accepts.

Decisions (DESIGN.md "checks iss/aud", README "exactly"):
- `iss` must equal JWT_ISSUER; `aud` must equal JWT_AUDIENCE, as a string or a
  one-element list. A list naming other audiences too is refused: we never mint one,
  and such a token could be replayed against the other services it names.
- The header may carry only `alg` (exactly the configured one), `kid` (exactly ours)
  and `typ` (`at+jwt`): `jku`, `x5u`, `jwk`, `x5c`, `crit`, `b64`, … are refused, so
  no key is ever taken from, or fetched because of, a token.
- Duplicate JSON member names in header or payload are refused (RFC 8725 §3.2 /
  RFC 7515 §5.2: no "last one wins").
- `exp`, `iat` (and `nbf` when present) are integers (no floats, booleans, strings,
  null) within year 1970..9999, `iat` < `exp`, and `exp - iat` at most the configured
  access lifetime; a well-formed `exp` in the past is AUTH_TOKEN_EXPIRED.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.lib.crypto.tokens import TokenInvalidError, TokenService
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import DEFAULT_PASSWORD, create_user
from tests.security.forge import (
    KeyPair,
    b64std,
    b64url,
    jwk_of,
    members,
    new_keypair,
    self_signed_cert_der,
    signer_for,
    token,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ISSUER = "https://issuer.example"
AUDIENCE = "https://api.example"
VERIFY = "/api/v1/auth/verify"
LOGOUT = "/api/v1/auth/logout"
REFRESH = "/api/v1/auth/refresh"
ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
KIND_OF = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}


# ---- the outbound trap: a local server that `jku` / `x5u` point to ----------------------------


class _Trap(ThreadingHTTPServer):
    hits: list[str]
    jwks: bytes
    cert: bytes


class _TrapHandler(BaseHTTPRequestHandler):
    server: _Trap

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        body = self.server.cert if self.path.endswith(".pem") else self.server.jwks
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def trap() -> Iterator[_Trap]:
    server = _Trap(("127.0.0.1", 0), _TrapHandler)
    server.hits, server.jwks, server.cert = [], b"{}", b""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def trap_url(trap: _Trap, path: str) -> str:
    return f"http://127.0.0.1:{trap.server_address[1]}{path}"


# ---- the services under attack: one in-process app per algorithm ------------------------------


@dataclass
class Target:
    """One running app and everything an attacker (or the positive control) needs."""

    alg: str
    client: AsyncTestClient[Any]
    tokens: TokenService
    real_key: bytes | Any  # HMAC secret bytes, or the private key object
    keypair: KeyPair | None
    attacker: dict[str, KeyPair] = field(default_factory=dict)
    trap: _Trap | None = None

    @property
    def kid(self) -> str:
        return self.tokens.key_id

    def header(self, drop: tuple[str, ...] = (), **changes: Any) -> str:
        base: dict[str, Any] = {"alg": self.alg, "kid": self.kid, "typ": "at+jwt"}
        base.update(changes)
        return members((k, v) for k, v in base.items() if k not in drop)

    def claims(self, drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "sub": str(uuid.uuid4()),
            "username": "mallory",
            "roles": ["admin"],
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
            "sid": str(uuid.uuid4()),
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        base.update(changes)
        return {k: v for k, v in base.items() if k not in drop}

    def payload(self, drop: tuple[str, ...] = (), raw: dict[str, str] | None = None, **changes: Any) -> str:
        return members(self.claims(drop=drop + tuple(raw or ()), **changes).items(), raw=raw)

    def sign(self, header: str | bytes, payload: str | bytes) -> str:
        """Signed with the service's real key and algorithm: only the content can be wrong."""
        return token(header, payload, signer_for(self.alg, self.real_key))

    def real_token(self) -> str:
        issued, _ = self.tokens.issue_access(
            user_id=str(uuid.uuid4()), username="alice", roles=["user"], session_id=str(uuid.uuid4())
        )
        return issued


class Targets:
    def __init__(self, stack: AsyncExitStack, database_url: str, redis_url: str, keydir: Path, trap: _Trap) -> None:
        self._stack, self._db, self._redis, self._dir, self._trap = stack, database_url, redis_url, keydir, trap
        self._built: dict[str, Target] = {}
        self.attacker = {kind: new_keypair(kind, keydir, f"attacker-{kind}") for kind in ("RSA", "EC", "OKP")}

    async def get(self, alg: str) -> Target:
        if alg not in self._built:
            self._built[alg] = await self._build(alg)
        return self._built[alg]

    async def _build(self, alg: str) -> Target:
        keypair = None
        extra: dict[str, str] = {}
        if alg != "HS256":
            keypair = new_keypair(KIND_OF[alg], self._dir, f"service-{alg}")
            extra = {"jwt_private_key_file": str(keypair.private_file), "jwt_public_key_file": str(keypair.public_file)}
        settings = make_settings(
            self._db, self._redis, jwt_algorithm=alg, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **extra
        )
        client = await self._stack.enter_async_context(AsyncTestClient(app=create_app(settings)))
        real_key: Any = TEST_SECRET.encode() if keypair is None else keypair.private
        return Target(alg, client, client.app.state.resources.tokens, real_key, keypair, self.attacker, self._trap)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def targets(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory, trap: _Trap
) -> AsyncIterator[Targets]:
    async with AsyncExitStack() as stack:
        yield Targets(stack, database_url, redis_url, tmp_path_factory.mktemp("keys"), trap)


def assert_envelope(response: httpx.Response, code: str = "AUTH_TOKEN_INVALID") -> None:
    assert response.status_code == 401, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, f"401 {body['error']['code']}"
    assert {"code", "message", "timestamp", "request_id"} <= set(body["error"])
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Traceback" not in response.text


async def assert_refused(target: Target, forged: str, code: str = "AUTH_TOKEN_INVALID") -> None:
    """Refused on every Bearer endpoint: verify and logout."""
    headers = {"Authorization": f"Bearer {forged}"}
    assert_envelope(await target.client.get(VERIFY, headers=headers), code)
    assert_envelope(await target.client.post(LOGOUT, headers=headers, json={"everywhere": True}), code)


# ---- the matrix -------------------------------------------------------------------------------

Build = Callable[[Target], str]
CASES: list[tuple[str, tuple[str, ...], Build]] = []
ALL, HS, ASYM = ALGORITHMS, ("HS256",), ("RS256", "ES256", "EdDSA")


def _cases(group: str, algs: tuple[str, ...], builds: dict[str, Build]) -> None:
    for name, build in builds.items():
        CASES.append((f"{group}:{name}", algs, build))


# alg "none" in any spelling, with and without a signature segment.
for _alg in ("none", "None", "NONE", "nOnE"):
    _cases(
        f"alg-{_alg}",
        ALL,
        {
            "empty-signature": lambda t, a=_alg: token(t.header(alg=a), t.payload()),
            "random-signature": lambda t, a=_alg: token(
                t.header(alg=a), t.payload(), signature=secrets.token_bytes(64)
            ),
            "real-signature": lambda t, a=_alg: (
                f"{token(t.header(alg=a), t.payload()).rstrip('.')}.{t.real_token().split('.')[2]}"
            ),
            "two-segments": lambda t, a=_alg: token(t.header(alg=a), t.payload()).rstrip("."),
        },
    )
_cases("alg-missing", ALL, {"signed": lambda t: t.sign(t.header(drop=("alg",)), t.payload())})


# Algorithm confusion: an HS256 service sees asymmetric tokens from attacker keys ...
def _attacker_signed(alg: str, kind: str) -> Build:
    return lambda t: token(t.header(alg=alg), t.payload(), signer_for(alg, t.attacker[kind].private))


_cases(
    "confusion-into-HS256",
    HS,
    {
        "RS256-attacker-key": _attacker_signed("RS256", "RSA"),
        "PS256-attacker-key": _attacker_signed("PS256", "RSA"),
        "ES256-attacker-key": _attacker_signed("ES256", "EC"),
        "EdDSA-attacker-key": _attacker_signed("EdDSA", "OKP"),
        "HS384-real-secret": lambda t: token(t.header(alg="HS384"), t.payload(), signer_for("HS384", t.real_key)),
        "HS512-real-secret": lambda t: token(t.header(alg="HS512"), t.payload(), signer_for("HS512", t.real_key)),
        "HS256-other-secret": lambda t: token(t.header(), t.payload(), signer_for("HS256", secrets.token_bytes(32))),
        "HS256-empty-secret": lambda t: token(t.header(), t.payload(), signer_for("HS256", b"")),
    },
)


# ... and an asymmetric service sees HMAC tokens keyed with its own public key (the classic).
def _public_key_as_secret(alg: str, transform: Callable[[bytes], bytes] = lambda pem: pem) -> Build:
    def build(t: Target) -> str:
        assert t.keypair is not None
        return token(t.header(alg=alg), t.payload(), signer_for(alg, transform(t.keypair.public_pem)))

    return build


def _der(pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _same_alg_attacker(t: Target) -> str:
    kind = KIND_OF[t.alg]
    return token(t.header(), t.payload(), signer_for(t.alg, t.attacker[kind].private))


_cases(
    "confusion-into-asymmetric",
    ASYM,
    {
        "HS256-public-pem": _public_key_as_secret("HS256"),
        "HS384-public-pem": _public_key_as_secret("HS384"),
        "HS512-public-pem": _public_key_as_secret("HS512"),
        "HS256-public-pem-no-newline": _public_key_as_secret("HS256", lambda pem: pem.rstrip(b"\n")),
        "HS256-public-der": _public_key_as_secret("HS256", _der),
        "same-alg-attacker-key": _same_alg_attacker,
        "RS256-attacker-key": _attacker_signed("RS256", "RSA"),
        "ES256-attacker-key": _attacker_signed("ES256", "EC"),
        "EdDSA-attacker-key": _attacker_signed("EdDSA", "OKP"),
    },
)
_cases(
    "confusion-rsa-family",
    ("RS256",),
    {
        "PS256-real-key": lambda t: token(t.header(alg="PS256"), t.payload(), signer_for("PS256", t.real_key)),
        "RS512-real-key": lambda t: token(t.header(alg="RS512"), t.payload(), signer_for("RS512", t.real_key)),
    },
)


# Tampering with real tokens.
def _tamper_payload(**changes: Any) -> Build:
    def build(t: Target) -> str:
        header, payload, signature = t.real_token().split(".")
        import base64

        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims.update(changes)
        return f"{header}.{b64url(json.dumps(claims))}.{signature}"

    return build


def _flip_bit(t: Target) -> str:
    import base64

    header, payload, signature = t.real_token().split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{b64url(bytes(raw))}"


_cases(
    "tampered",
    ALL,
    {
        "roles-admin": _tamper_payload(roles=["admin"]),
        "other-sub": _tamper_payload(sub=str(uuid.uuid4())),
        "exp-extended": _tamper_payload(exp=int(time.time()) + 86400 * 365),
        "other-audience": _tamper_payload(aud="https://other.example"),
        "header-typ-changed": lambda t: f"{b64url(t.header(typ='JWT'))}.{'.'.join(t.real_token().split('.')[1:])}",
        "signature-of-other-token": lambda t: t.real_token().rsplit(".", 1)[0] + "." + t.real_token().split(".")[2],
        "signature-flipped-bit": _flip_bit,
        "signature-truncated": lambda t: t.real_token()[:-4],
        "signature-stripped": lambda t: t.real_token().rsplit(".", 1)[0] + ".",
        "signature-doubled": lambda t: t.real_token() + t.real_token().split(".")[2],
    },
)

# `kid` injection, signed with the real key: only the kid is wrong.
_cases(
    "kid",
    ALL,
    {
        "path-traversal": lambda t: t.sign(t.header(kid="../../etc/passwd"), t.payload()),
        "dev-null": lambda t: t.sign(t.header(kid="/dev/null"), t.payload()),
        "sql-injection": lambda t: t.sign(t.header(kid="' OR 1=1--"), t.payload()),
        "ours-plus-suffix": lambda t: t.sign(t.header(kid=t.kid + "x"), t.payload()),
        "ours-uppercase": lambda t: t.sign(t.header(kid=t.kid.upper() if t.kid != t.kid.upper() else "X"), t.payload()),
        "empty": lambda t: t.sign(t.header(kid=""), t.payload()),
        "missing": lambda t: t.sign(t.header(drop=("kid",)), t.payload()),
        "huge-100KB": lambda t: t.sign(t.header(kid="A" * 100_000), t.payload()),
        "number": lambda t: t.sign(t.header(kid=1), t.payload()),
        "null": lambda t: t.sign(t.header(kid=None), t.payload()),
        "object": lambda t: t.sign(t.header(kid={"kid": t.kid}), t.payload()),
        "array": lambda t: t.sign(t.header(kid=[t.kid]), t.payload()),
        "bool": lambda t: t.sign(t.header(kid=True), t.payload()),
    },
)


# Headers that carry or point to a key: signed with an attacker key they describe (the kid is ours).
def _attacker_kp(t: Target) -> tuple[str, Any]:
    if t.alg == "HS256":
        return "HS256", b"attacker-chosen-secret-attacker-chosen-secret"
    return t.alg, t.attacker[KIND_OF[t.alg]].private


def _key_header(name: str, real: bool = False) -> Build:
    def build(t: Target) -> str:
        assert t.trap is not None
        alg, key = _attacker_kp(t)
        if isinstance(key, bytes):
            jwk: dict[str, Any] = {"kty": "oct", "kid": t.kid, "k": b64url(key)}
            cert = b""
        else:
            jwk, cert = jwk_of(key, t.kid), self_signed_cert_der(key)
        value: Any = {
            "jku": trap_url(t.trap, "/jwks.json"),
            "x5u": trap_url(t.trap, "/cert.pem"),
            "jwk": jwk,
            "x5c": [b64std(cert or b"not-a-cert")],
        }[name]
        t.trap.jwks = json.dumps({"keys": [jwk]}).encode()
        t.trap.cert = cert
        if real:
            return t.sign(t.header(**{name: value}), t.payload())
        return token(t.header(**{name: value}), t.payload(), signer_for(alg, key))

    return build


_cases("key-header", ALL, {name: _key_header(name) for name in ("jku", "x5u", "jwk", "x5c")})
_cases("key-header-real-key", ALL, {name: _key_header(name, real=True) for name in ("jku", "x5u", "jwk", "x5c")})


# `crit` and RFC 7797 `b64`, signed with the real key.
def _unencoded_payload(t: Target) -> str:
    header = b64url(t.header(b64=False, crit=["b64"]))
    payload = members(t.claims(iss="issuer", aud="api").items())  # no '.' inside: a compact JWS stays 3 segments
    signature = signer_for(t.alg, t.real_key)(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{b64url(signature)}"


_cases(
    "crit",
    (*HS, "ES256"),
    {
        "crit-exp": lambda t: t.sign(t.header(crit=["exp"], exp=int(time.time()) + 60), t.payload()),
        "crit-unknown": lambda t: t.sign(t.header(crit=["x-policy"], **{"x-policy": "ignore-me"}), t.payload()),
        "crit-missing-member": lambda t: t.sign(t.header(crit=["x-policy"]), t.payload()),
        "crit-empty": lambda t: t.sign(t.header(crit=[]), t.payload()),
        "crit-not-a-list": lambda t: t.sign(t.header(crit="b64", b64=False), t.payload()),
        "b64-false-with-crit": lambda t: t.sign(t.header(b64=False, crit=["b64"]), t.payload()),
        "b64-false-no-crit": lambda t: t.sign(t.header(b64=False), t.payload()),
        "b64-true-with-crit": lambda t: t.sign(t.header(b64=True, crit=["b64"]), t.payload()),
        "b64-false-raw-payload": _unencoded_payload,
        "unknown-header-member": lambda t: t.sign(t.header(zip="DEF"), t.payload()),
        "cty-jwt-nested": lambda t: t.sign(t.header(cty="JWT"), t.payload()),
    },
)


# Duplicate members, signed with the real key: a parser that keeps the last (or first) one must not decide.
def _dup_header(name: str, first: Any, second: Any) -> Build:
    def build(t: Target) -> str:
        base = {"alg": t.alg, "kid": t.kid, "typ": "at+jwt"}
        pairs = [(k, v) for k, v in base.items() if k != name] + [(name, first), (name, second)]
        return t.sign(members(pairs), t.payload())

    return build


def _dup_claim(name: str, first: Callable[[Target], Any], second: Callable[[Target], Any]) -> Build:
    def build(t: Target) -> str:
        claims = t.claims()
        pairs = [(k, v) for k, v in claims.items() if k != name] + [(name, first(t)), (name, second(t))]
        return t.sign(t.header(), members(pairs))

    return build


_now = lambda: int(time.time())  # noqa: E731
_cases(
    "duplicate",
    ALL,
    {
        "header-alg-none-then-real": lambda t: _dup_header("alg", "none", t.alg)(t),
        "header-alg-real-then-none": lambda t: _dup_header("alg", t.alg, "none")(t),
        "header-kid": lambda t: _dup_header("kid", "../../etc/passwd", t.kid)(t),
        "header-typ": _dup_header("typ", "JWT", "at+jwt"),
        "claim-sub": _dup_claim("sub", lambda t: str(uuid.uuid4()), lambda t: str(uuid.uuid4())),
        "claim-roles": _dup_claim("roles", lambda t: ["user"], lambda t: ["admin"]),
        "claim-exp": _dup_claim("exp", lambda t: _now() - 3600, lambda t: _now() + 600),
        "claim-aud": _dup_claim("aud", lambda t: "https://evil.example", lambda t: AUDIENCE),
        "claim-iss": _dup_claim("iss", lambda t: "https://evil.example", lambda t: ISSUER),
    },
)

# exp / iat / nbf: missing or malformed (signed with the real key).
_BAD_NUMBERS = {
    "string": '"9999999999"',
    "float": "{now}.5",
    "1e400": "1e400",
    "1e30-float": "1e30",
    "10**30": str(10**30),
    "negative": "-1",
    "zero": "0",
    "true": "true",
    "false": "false",
    "null": "null",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "object": '{"$date": 1}',
    "array": "[{now}]",
}


def _time_claim(name: str, text: str) -> Build:
    def build(t: Target) -> str:
        now = _now()
        literal = text.replace("{now}", str(now + 300 if name in ("exp",) else now - 10))
        return t.sign(t.header(), t.payload(raw={name: literal}))

    return build


for _claim in ("exp", "iat", "nbf"):
    _cases(f"{_claim}", HS, {bad: _time_claim(_claim, text) for bad, text in _BAD_NUMBERS.items()})
_cases(
    "time",
    HS,
    {
        "exp-missing": lambda t: t.sign(t.header(), t.payload(drop=("exp",))),
        "iat-missing": lambda t: t.sign(t.header(), t.payload(drop=("iat",))),
        "iat-in-future": lambda t: t.sign(t.header(), t.payload(iat=_now() + 3600, exp=_now() + 3700)),
        "nbf-in-future": lambda t: t.sign(t.header(), t.payload(nbf=_now() + 3600)),
        "exp-before-iat": lambda t: t.sign(t.header(), t.payload(iat=_now(), exp=_now() - 1)),
        "exp-far-future": lambda t: t.sign(t.header(), t.payload(exp=_now() + 10 * 365 * 86400)),
        "exp-beyond-lifetime": lambda t: t.sign(t.header(), t.payload(exp=_now() + 3600 + 120)),
        "iat-ancient": lambda t: t.sign(t.header(), t.payload(iat=1)),
        "iat-negative-exp-valid": lambda t: t.sign(t.header(), t.payload(iat=-(10**12))),
    },
)

# The other required claims, missing or of the wrong type.
_cases(
    "claims",
    HS,
    {
        **{
            f"{name}-missing": (lambda t, n=name: t.sign(t.header(), t.payload(drop=(n,))))
            for name in ("sub", "jti", "sid", "iss", "aud", "username", "roles")
        },
        "sub-number": lambda t: t.sign(t.header(), t.payload(sub=12345)),
        "sub-null": lambda t: t.sign(t.header(), t.payload(sub=None)),
        "sub-empty": lambda t: t.sign(t.header(), t.payload(sub="")),
        "jti-object": lambda t: t.sign(t.header(), t.payload(jti={"$ne": ""})),
        "roles-string": lambda t: t.sign(t.header(), t.payload(roles="admin")),
        "roles-nested": lambda t: t.sign(t.header(), t.payload(roles=[["admin"]])),
        "payload-array": lambda t: t.sign(t.header(), "[1, 2, 3]"),
        "payload-string": lambda t: t.sign(t.header(), '"admin"'),
        "payload-null": lambda t: t.sign(t.header(), "null"),
        "payload-empty": lambda t: t.sign(t.header(), ""),
        "payload-deep-nesting": lambda t: t.sign(t.header(), "[" * 1400 + "]" * 1400),  # < 4 KiB, > recursion limit
    },
)

# iss / aud: prefixes, superstrings, case, lists (signed with the real key).
_cases(
    "iss",
    HS,
    {
        "superstring": lambda t: t.sign(t.header(), t.payload(iss=ISSUER + ".evil")),
        "prefix": lambda t: t.sign(t.header(), t.payload(iss=ISSUER[:-1])),
        "trailing-slash": lambda t: t.sign(t.header(), t.payload(iss=ISSUER + "/")),
        "uppercase": lambda t: t.sign(t.header(), t.payload(iss=ISSUER.upper())),
        "leading-space": lambda t: t.sign(t.header(), t.payload(iss=" " + ISSUER)),
        "list": lambda t: t.sign(t.header(), t.payload(iss=[ISSUER])),
        "null": lambda t: t.sign(t.header(), t.payload(iss=None)),
        "number": lambda t: t.sign(t.header(), t.payload(iss=1)),
    },
)
_cases(
    "aud",
    HS,
    {
        "superstring": lambda t: t.sign(t.header(), t.payload(aud=AUDIENCE + ".evil")),
        "prefix": lambda t: t.sign(t.header(), t.payload(aud=AUDIENCE[:-1])),
        "uppercase": lambda t: t.sign(t.header(), t.payload(aud=AUDIENCE.upper())),
        "list-ours-plus-other": lambda t: t.sign(t.header(), t.payload(aud=[AUDIENCE, "https://evil.example"])),
        "list-other-plus-ours": lambda t: t.sign(t.header(), t.payload(aud=["https://evil.example", AUDIENCE])),
        "list-ours-twice": lambda t: t.sign(t.header(), t.payload(aud=[AUDIENCE, AUDIENCE])),
        "list-superstring": lambda t: t.sign(t.header(), t.payload(aud=[AUDIENCE + ".evil"])),
        "list-empty": lambda t: t.sign(t.header(), t.payload(aud=[])),
        "list-with-number": lambda t: t.sign(t.header(), t.payload(aud=[AUDIENCE, 1])),
        "null": lambda t: t.sign(t.header(), t.payload(aud=None)),
        "empty": lambda t: t.sign(t.header(), t.payload(aud="")),
        "object": lambda t: t.sign(t.header(), t.payload(aud={"aud": AUDIENCE})),
    },
)

# typ: only an access token (RFC 9068 at+jwt) is an access token.
_cases(
    "typ",
    HS,
    {
        "missing": lambda t: t.sign(t.header(drop=("typ",)), t.payload()),
        "JWT": lambda t: t.sign(t.header(typ="JWT"), t.payload()),
        "refresh": lambda t: t.sign(t.header(typ="refresh"), t.payload()),
        "rt+jwt": lambda t: t.sign(t.header(typ="rt+jwt"), t.payload()),
        "id-token": lambda t: t.sign(t.header(typ="id_token+jwt"), t.payload()),
        "trailing-space": lambda t: t.sign(t.header(typ="at+jwt "), t.payload()),
        "number": lambda t: t.sign(t.header(typ=1), t.payload()),
        "null": lambda t: t.sign(t.header(typ=None), t.payload()),
        "list": lambda t: t.sign(t.header(typ=["at+jwt"]), t.payload()),
        "token_use-refresh-claim": lambda t: t.sign(t.header(typ="JWT"), t.payload(token_use="refresh")),
    },
)


# Malformed segments and encodings.
def _std_alphabet(t: Target) -> str:
    # A username whose UTF-8 bytes encode to '+' and '/' in standard base64.
    header, payload = t.header(), t.payload(username="\u00ff\u00fe\u00fb\u00ff?>?>")
    signing_input = f"{b64std(header).rstrip('=')}.{b64std(payload).rstrip('=')}"
    assert "+" in signing_input or "/" in signing_input
    return f"{signing_input}.{b64std(signer_for(t.alg, t.real_key)(signing_input.encode())).rstrip('=')}"


def _padded(t: Target) -> str:
    header, payload = b64url(t.header()) + "==", b64url(t.payload()) + "="
    signature = signer_for(t.alg, t.real_key)(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{b64url(signature)}="


_cases(
    "segments",
    HS,
    {
        "two": lambda t: ".".join(t.real_token().split(".")[:2]),
        "four": lambda t: t.real_token() + ".e30",
        "five-jwe-shape": lambda t: t.real_token() + ".e30.e30",
        "padding": _padded,
        "padding-on-real-signature": lambda t: t.real_token() + "=",
        "standard-base64": _std_alphabet,
        "non-utf8-header": lambda t: t.sign(
            b'{"alg":"' + t.alg.encode() + b'","kid":"\xff\xfe","typ":"at+jwt"}', t.payload()
        ),
        "non-utf8-payload": lambda t: t.sign(
            t.header(), t.payload().replace('"mallory"', '"mall\udcff"').encode("utf-8", "surrogateescape")
        ),
        "latin1-payload": lambda t: t.sign(
            t.header(), t.payload(username="m\u00e9").replace("\\u00e9", "\u00e9").encode("latin-1")
        ),
        "utf16-payload": lambda t: t.sign(t.header(), t.payload().encode("utf-16")),
        "bom-payload": lambda t: t.sign(t.header(), b"\xef\xbb\xbf" + t.payload().encode()),
        "empty-header": lambda t: "." + ".".join(t.real_token().split(".")[1:]),
        "empty-payload": lambda t: t.real_token().split(".")[0] + ".." + t.real_token().split(".")[2],
        "all-empty": lambda t: "..",
        "dots-only": lambda t: "....",
        "space-inside": lambda t: t.real_token().replace(".", ". ", 1),
        "tab-inside": lambda t: t.real_token().replace(".", ".\t", 1),
        "header-not-json": lambda t: t.sign("alg=HS256", t.payload()),
        "header-array": lambda t: t.sign('["alg", "kid", "typ"]', t.payload()),
        "header-string": lambda t: t.sign('"alg"', t.payload()),
        "header-deep-nesting": lambda t: t.sign("[" * 300 + "]" * 300, t.payload()),
        "jwe-like-header": lambda t: t.sign(t.header(enc="A256GCM"), t.payload()),
        "8KB": lambda t: t.sign(t.header(), t.payload(pad="x" * 8192)),
        "64KB": lambda t: t.sign(t.header(), t.payload(pad="x" * 65536)),
        "1MB": lambda t: "A" * (1 << 20),
        "1MB-signed": lambda t: t.sign(t.header(), t.payload(pad=secrets.token_hex(1 << 19))),
    },
)


def _groups() -> list[Any]:
    """One test per (algorithm, group of cases): the per-test set-up (clean tables and Redis) is paid once
    per group, and a failure lists every case of the group that got through."""
    groups: dict[tuple[str, str], list[tuple[str, Build]]] = {}
    for name, algs, build in CASES:
        for alg in algs:
            groups.setdefault((alg, name.split(":")[0]), []).append((name, build))
    return [pytest.param(alg, cases, id=f"{alg}-{group}") for (alg, group), cases in groups.items()]


GROUPS = _groups()


@pytest.mark.parametrize(("alg", "cases"), GROUPS)
async def test_forged_tokens_are_refused(targets: Targets, alg: str, cases: list[tuple[str, Build]]) -> None:
    target = await targets.get(alg)
    failures: list[str] = []
    for name, build in cases:
        try:
            await assert_refused(target, build(target))
        except AssertionError as exc:
            failures.append(f"{name}: {str(exc).splitlines()[0][:200]}")
    assert not failures, "\n".join(failures)


# ---- positive controls: the same helpers, the real key and a real user -> accepted --------------


@pytest.mark.parametrize("alg", ALGORITHMS)
async def test_hand_forged_token_with_the_real_key_is_accepted(targets: Targets, alg: str) -> None:
    target = await targets.get(alg)
    user = await create_user(target.client.app.state.resources.settings, password_hash="unused")
    for aud in (AUDIENCE, [AUDIENCE]):
        good = target.sign(target.header(), target.payload(sub=str(user.id), aud=aud))
        response = await target.client.get(VERIFY, headers={"Authorization": f"Bearer {good}"})
        assert response.status_code == 200, response.text
        assert response.json()["user_id"] == str(user.id)
    # A real user's token with an absurd exp/iat: refused as invalid, never a 500 from date arithmetic
    # (/verify formats `exp` as a date; logout keeps the jti in Redis until `exp`).
    for changes in ({"exp": 10**30}, {"exp": 253402300800}, {"iat": -(10**12)}):
        absurd = target.sign(target.header(), target.payload(sub=str(user.id), **changes))
        await assert_refused(target, absurd)
    # The same token with a well-formed `exp` just past: expired, not invalid.
    now = _now()
    old = target.sign(target.header(), target.payload(sub=str(user.id), iat=now - 700, exp=now - 100))
    assert_envelope(await target.client.get(VERIFY, headers={"Authorization": f"Bearer {old}"}), "AUTH_TOKEN_EXPIRED")


async def test_no_header_makes_the_service_fetch_a_key(targets: Targets, trap: _Trap) -> None:
    """Runs after the matrix (same module): jku/x5u/x5c/jwk tokens made no outbound request."""
    target = await targets.get("HS256")
    for name in ("jku", "x5u", "jwk", "x5c"):
        for real in (False, True):
            await assert_refused(target, _key_header(name, real)(target))
    # The trap works: a request to it is counted.
    with httpx.Client() as http:
        assert http.get(trap_url(trap, "/probe")).status_code == 200
    assert trap.hits == ["/probe"]


# ---- Authorization header shapes ------------------------------------------------------------


def _shapes(good: str, forged: str) -> dict[str, list[tuple[str, str | bytes]]]:
    return {
        "scheme-only": [("Authorization", "Bearer")],
        "scheme-and-space": [("Authorization", "Bearer ")],
        "no-scheme": [("Authorization", good)],
        "basic": [("Authorization", f"Basic {good}")],
        "token-scheme": [("Authorization", f"Token {good}")],
        "bearer-equals": [("Authorization", f"Bearer={good}")],
        "bearer-colon": [("Authorization", f"Bearer: {good}")],
        "tab-separator": [("Authorization", f"Bearer\t{good}")],
        "lowercase-forged": [("Authorization", f"bearer {forged}")],
        "two-tokens": [("Authorization", f"Bearer {good} {good}")],
        "two-tokens-comma": [("Authorization", f"Bearer {good}, Bearer {good}")],
        "two-headers-good-first": [("Authorization", f"Bearer {good}"), ("Authorization", f"Bearer {forged}")],
        "two-headers-forged-first": [("Authorization", f"Bearer {forged}"), ("Authorization", f"Bearer {good}")],
        "two-headers-same": [("Authorization", f"Bearer {good}"), ("Authorization", f"Bearer {good}")],
        "non-ascii-appended": [("Authorization", f"Bearer {good}\u00e9".encode())],
        "non-ascii-token": [("Authorization", "Bearer \u00e9\u00e9\u00e9.\u00e9\u00e9.\u00e9".encode())],
        "utf8-token": [("Authorization", "Bearer \u0435yJ.\u0435yJ.\u0435yJ".encode())],
        "query-string-only": [],
    }


SHAPES = list(_shapes("g", "f"))


@pytest.mark.parametrize("shape", SHAPES)
async def test_unusable_authorization_header_is_refused(targets: Targets, shape: str) -> None:
    target = await targets.get("HS256")
    user = await create_user(target.client.app.state.resources.settings, password_hash="unused")
    good = target.sign(target.header(), target.payload(sub=str(user.id)))
    forged = token(target.header(alg="none"), target.payload(sub=str(user.id)))
    # The control: the good token alone, with the scheme in lower case, is accepted.
    ok = await target.client.get(VERIFY, headers={"Authorization": f"bearer {good}"})
    assert ok.status_code == 200, ok.text
    headers = _shapes(good, forged)[shape]
    raw = [(name.lower().encode(), value if isinstance(value, bytes) else value.encode()) for name, value in headers]
    for method, path in (("GET", f"{VERIFY}?access_token={good}"), ("POST", f"{LOGOUT}?access_token={good}")):
        response = await target.client.request(method, path, headers=httpx.Headers(raw))
        assert_envelope(response)


# ---- access / refresh confusion ---------------------------------------------------------------


async def test_refresh_and_access_tokens_are_not_interchangeable(targets: Targets) -> None:
    target = await targets.get("HS256")
    await create_user(target.client.app.state.resources.settings, username="carol", password_hash=None)
    login = await target.client.post(
        "/api/v1/auth/login", json={"username": "carol", "password": "correct horse battery staple"}
    )
    assert login.status_code == 200, login.text
    pair = login.json()
    # A refresh token is not a Bearer token ...
    await assert_refused(target, pair["refresh_token"])
    # ... and an access token (ours, valid) is not a refresh token.
    response = await target.client.post(REFRESH, json={"refresh_token": pair["access_token"]})
    assert_envelope(response)
    # A forged JWT sent to refresh is just an unknown refresh token.
    for forged in (
        token(target.header(alg="none"), target.payload()),
        target.sign(target.header(typ="rt+jwt"), target.payload()),
        f"{uuid.uuid4().hex}.{pair['access_token'].split('.')[2]}",
    ):
        response = await target.client.post(REFRESH, json={"refresh_token": forged})
        assert response.status_code in (400, 401), response.text
        assert response.json()["error"]["code"] in ("AUTH_TOKEN_INVALID", "VALIDATION_ERROR")
    # Both tokens still do their own job afterwards.
    ok = await target.client.get(VERIFY, headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert ok.status_code == 200
    assert (await target.client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})).status_code == 200


# ---- huge tokens: refused before any parsing, in constant memory --------------------------------


async def test_huge_tokens_are_refused_fast_in_flat_memory(targets: Targets) -> None:
    target = await targets.get("HS256")
    verify = target.tokens.verify_access
    for size in (8 << 10, 64 << 10, 1 << 20):
        forged = "eyJ" + "A" * (size // 2) + "." + "B" * (size // 2) + ".c"
        tracemalloc.start()
        started = time.perf_counter()
        with pytest.raises(TokenInvalidError):
            verify(forged)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < 0.01, elapsed
        assert peak < 64 << 10, peak  # nothing proportional to the token is allocated
        started = time.perf_counter()
        await assert_refused(target, forged)
        assert time.perf_counter() - started < 2


async def test_cases_cover_every_algorithm() -> None:
    """The matrix is not silently empty for any configuration."""
    for alg in ALGORITHMS:
        assert sum(len(p.values[1]) for p in GROUPS if p.values[0] == alg) >= 40


async def test_many_forgeries_in_parallel_stay_401(targets: Targets) -> None:
    target = await targets.get("HS256")
    forged = [build(target) for name, algs, build in CASES if "HS256" in algs and "MB" not in name][:60]
    responses = await asyncio.gather(
        *(target.client.get(VERIFY, headers={"Authorization": f"Bearer {f}"}) for f in forged)
    )
    for response in responses:
        assert_envelope(response)


# ---- the real server: huge tokens, logs, no outbound request, duplicate headers -----------------


def _server_pid(port: int) -> int:
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"auth_service" in argv and b"--port" in argv and str(port).encode() in argv:
            return int(proc.name)
    raise AssertionError("API process not found")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_real_server_refuses_huge_and_key_carrying_tokens_without_logging_them(
    settings: Any, tmp_path: Path, trap: _Trap
) -> None:
    from tests.e2e.conftest import api_server

    service = TokenService(
        algorithm="HS256",
        secret=TEST_SECRET,
        private_key_file="",
        public_key_file="",
        key_id="",
        issuer=settings.tokens.issuer,
        audience=settings.tokens.audience,
        access_ttl=settings.tokens.access_ttl,
    )
    user = await create_user(settings, username="dave")
    now = _now()
    claims = {"sub": str(user.id), "username": "u", "roles": [], "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex,
              "sid": str(uuid.uuid4()), "iss": settings.tokens.issuer, "aud": settings.tokens.audience}  # fmt: skip
    real = signer_for("HS256", TEST_SECRET.encode())
    header = {"alg": "HS256", "kid": service.key_id, "typ": "at+jwt"}
    good = token(members(header.items()), members(claims.items()), real)
    attacker = b"attacker-secret-attacker-secret-attacker"
    jwks = {"keys": [{"kty": "oct", "kid": service.key_id, "k": b64url(attacker)}]}
    trap.jwks, trap.hits[:] = json.dumps(jwks).encode(), []
    key_carrying = [
        token(members({**header, name: value}.items()), members(claims.items()), signer_for("HS256", attacker))
        for name, value in (
            ("jku", trap_url(trap, "/jwks.json")),
            ("x5u", trap_url(trap, "/cert.pem")),
            ("jwk", jwks["keys"][0]),
            ("x5c", [b64std(b"not-a-cert")]),
        )
    ]
    # Each huge token carries a random marker that must never reach the log.
    markers = [secrets.token_hex(16) for _ in range(9)]
    huge = [
        f"eyJ{marker}" + "A" * size + f".{marker}.{marker}"
        for marker, size in zip(markers, [8 << 10, 64 << 10, 1 << 20] * 3, strict=True)
    ]
    with api_server(settings, tmp_path, LOG_LEVEL="DEBUG") as base, httpx.Client(base_url=base, timeout=10) as http:
        port = int(base.rsplit(":", 1)[1])
        pid = _server_pid(port)
        assert http.get(VERIFY, headers={"Authorization": f"Bearer {good}"}).status_code == 200
        rss_before = _rss_kib(pid)
        for forged in huge * 3:
            started = time.perf_counter()
            response = http.get(VERIFY, headers={"Authorization": f"Bearer {forged}"})
            assert time.perf_counter() - started < 1.0
            assert_envelope(response)
        assert _rss_kib(pid) - rss_before < 20 * 1024, "memory grows with huge tokens"
        for forged in key_carrying:
            assert_envelope(http.get(VERIFY, headers={"Authorization": f"Bearer {forged}"}))
            assert_envelope(http.post(LOGOUT, headers={"Authorization": f"Bearer {forged}"}))
        # Two Authorization fields on the wire (not merged by a test client): refused whichever comes first.
        forged = token(members({**header, "alg": "none"}.items()), members(claims.items()))
        for pair in ([good, forged], [forged, good], [good, good]):
            raw = httpx.Headers([(b"authorization", f"Bearer {t}".encode()) for t in pair])
            assert_envelope(http.get(VERIFY, headers=raw))
        assert http.get(VERIFY, headers={"Authorization": f"Bearer {good}"}).status_code == 200
        # A logged event after all that, so the log below is known to be live.
        login = http.post("/api/v1/auth/login", json={"username": "dave", "password": DEFAULT_PASSWORD})
        assert login.status_code == 200
    assert trap.hits == [], "a token header made the service fetch a URL"
    log = (tmp_path / f"api-{port}.log").read_text()
    assert "login.succeeded" in log
    for marker in markers:
        assert marker not in log
    for forged in [*key_carrying, good]:
        for part in forged.split("."):
            assert part[-40:] not in log
