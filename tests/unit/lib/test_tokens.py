from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from auth_service.lib.crypto.tokens import (
    TokenExpiredError,
    TokenInvalidError,
    TokenService,
    family_of,
    hash_refresh_token,
    new_refresh_token,
)

SECRET = "k" * 48


def service(**overrides: Any) -> TokenService:
    options: dict[str, Any] = {
        "algorithm": "HS256",
        "secret": SECRET,
        "private_key_file": "",
        "public_key_file": "",
        "key_id": "",
        "issuer": "auth-service",
        "audience": "clients",
        "access_ttl": 3600,
    }
    options.update(overrides)
    return TokenService(**options)


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def issue(svc: TokenService) -> tuple[str, dict[str, Any]]:
    token, claims = svc.issue_access(
        user_id=str(uuid.uuid4()), username="alice", roles=["user"], session_id=str(uuid.uuid4())
    )
    return token, {
        "sub": claims.sub,
        "username": claims.username,
        "roles": claims.roles,
        "iat": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
        "sid": claims.sid,
        "iss": claims.iss,
        "aud": claims.aud,
    }


def sign(svc: TokenService, header: dict[str, Any], claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(header, claims, OctKey.import_key(secret.encode()), algorithms=[header["alg"]])


def test_issued_token_verifies_with_all_claims() -> None:
    svc = service()
    token, _ = issue(svc)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "kid": svc.key_id, "typ": "at+jwt"}
    claims = svc.verify_access(token)
    assert claims.username == "alice" and claims.roles == ["user"]
    assert claims.exp - claims.iat == 3600
    assert claims.iss == "auth-service" and claims.aud == "clients"


def test_expired_token_is_expired_not_invalid() -> None:
    svc = service()
    _, claims = issue(svc)
    claims.update(iat=int(time.time()) - 7200, exp=int(time.time()) - 10)
    token = sign(svc, {"alg": "HS256", "kid": svc.key_id, "typ": "at+jwt"}, claims)
    with pytest.raises(TokenExpiredError):
        svc.verify_access(token)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda c: c.update(aud="someone-else"), id="wrong-audience"),
        pytest.param(lambda c: c.update(aud="clients-evil"), id="audience-superstring"),
        pytest.param(lambda c: c.update(iss="auth-service.evil"), id="wrong-issuer"),
        pytest.param(lambda c: c.pop("jti"), id="no-jti"),
        pytest.param(lambda c: c.pop("exp"), id="no-exp"),
        pytest.param(lambda c: c.pop("iat"), id="no-iat"),
        pytest.param(lambda c: c.pop("sub"), id="no-sub"),
        pytest.param(lambda c: c.pop("sid"), id="no-sid"),
        pytest.param(lambda c: c.update(exp="tomorrow"), id="string-exp"),
        pytest.param(lambda c: c.update(iat=int(time.time()) + 3600), id="issued-in-future"),
        pytest.param(lambda c: c.update(roles="admin"), id="roles-not-a-list"),
    ],
)
def test_bad_claims_are_invalid(mutate: Any) -> None:
    svc = service()
    _, claims = issue(svc)
    mutate(claims)
    token = sign(svc, {"alg": "HS256", "kid": svc.key_id, "typ": "at+jwt"}, claims)
    with pytest.raises(TokenInvalidError):
        svc.verify_access(token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg: str) -> None:
    svc = service()
    _, claims = issue(svc)
    token = f"{b64({'alg': alg, 'kid': svc.key_id, 'typ': 'at+jwt'})}.{b64(claims)}."
    with pytest.raises(TokenInvalidError):
        svc.verify_access(token)


def test_other_algorithm_same_key_is_refused() -> None:
    svc = service()
    _, claims = issue(svc)
    token = sign(svc, {"alg": "HS512", "kid": svc.key_id, "typ": "at+jwt"}, claims)
    with pytest.raises(TokenInvalidError):
        svc.verify_access(token)


def test_wrong_key_is_refused() -> None:
    svc = service()
    _, claims = issue(svc)
    token = sign(svc, {"alg": "HS256", "kid": svc.key_id, "typ": "at+jwt"}, claims, secret="z" * 48)
    with pytest.raises(TokenInvalidError):
        svc.verify_access(token)


def test_tampered_payload_is_refused() -> None:
    svc = service()
    token, claims = issue(svc)
    claims["roles"] = ["admin"]
    header, _, signature = token.split(".")
    with pytest.raises(TokenInvalidError):
        svc.verify_access(f"{header}.{b64(claims)}.{signature}")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"alg": "HS256", "kid": "other", "typ": "at+jwt"}, id="foreign-kid"),
        pytest.param({"alg": "HS256", "typ": "at+jwt"}, id="no-kid"),
        pytest.param({"alg": "HS256", "kid": None, "typ": "JWT"}, id="plain-jwt-type"),
    ],
)
def test_header_must_be_ours(header: dict[str, Any]) -> None:
    svc = service()
    _, claims = issue(svc)
    if header.get("kid") is None:
        header = {k: v for k, v in header.items() if v is not None}
        header.setdefault("kid", svc.key_id) if header.get("typ") == "JWT" else None
    token = sign(svc, header, claims)
    with pytest.raises(TokenInvalidError):
        svc.verify_access(token)


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b", "a.b.c", "a.b.c.d", "....", "x" * 5000, "eyJhbGciOiJIUzI1NiJ9.e30.", "\u00e9.\u00e9.\u00e9"],
)
def test_garbage_is_invalid(garbage: str) -> None:
    with pytest.raises(TokenInvalidError):
        service().verify_access(garbage)


def test_refresh_tokens_are_random_and_successor_is_stable() -> None:
    svc = service()
    family = uuid.uuid4()
    first, second = new_refresh_token(family), new_refresh_token(family)
    assert first != second and len(first) >= 32 + 1 + 43
    assert family_of(first) == family_of(svc.successor_of(first)) == family.hex
    assert family_of("not-ours") is None and family_of("g" * 32 + ".x") is None
    assert svc.successor_of(first) == svc.successor_of(first)
    assert svc.successor_of(first) != svc.successor_of(second)
    assert service(secret="q" * 48).successor_of(first) != svc.successor_of(first)
    assert hash_refresh_token(first) != first and len(hash_refresh_token(first)) == 64


def test_asymmetric_keys_work(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    svc = service(algorithm="ES256", secret="", private_key_file=str(tmp_path / "key.pem"))
    token, _ = issue(svc)
    assert svc.verify_access(token).username == "alice"
    # An HS256 token made with the public key as the secret (algorithm confusion) is refused.
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, claims = issue(svc)
    signing_input = f"{b64({'alg': 'HS256', 'kid': svc.key_id, 'typ': 'at+jwt'})}.{b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64(mac)}"
    with pytest.raises(TokenInvalidError):
        svc.verify_access(forged)


# ---- strict parsing (issue #7; the HTTP matrix is tests/security/test_token_forgery.py) ---------


def hs256(svc: TokenService, header: str, payload: str | bytes, secret: str = SECRET) -> str:
    """Sign hand-written JSON text, so duplicate names and odd literals reach the service as written."""
    signing_input = f"{b64(header.encode())}.{b64(payload if isinstance(payload, bytes) else payload.encode())}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def our_header(svc: TokenService, **extra: Any) -> str:
    return json.dumps({"alg": "HS256", "kid": svc.key_id, "typ": "at+jwt", **extra})


def test_hand_signed_token_is_accepted() -> None:
    svc = service()
    _, claims = issue(svc)
    assert svc.verify_access(hs256(svc, our_header(svc), json.dumps(claims))).sub == claims["sub"]
    claims["aud"] = ["clients"]  # a one-element audience list is the same audience
    assert svc.verify_access(hs256(svc, our_header(svc), json.dumps(claims))).sub == claims["sub"]


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        pytest.param('{{"alg":"none","alg":"HS256","kid":"{kid}","typ":"at+jwt"}}', None, id="header-alg-twice"),
        pytest.param('{{"alg":"HS256","kid":"other","kid":"{kid}","typ":"at+jwt"}}', None, id="header-kid-twice"),
        pytest.param(None, ',"sub":"someone-else"}}', id="payload-sub-twice"),
        pytest.param(None, ',"roles":["admin"]}}', id="payload-roles-twice"),
    ],
)
def test_duplicate_member_names_are_refused(header: str | None, payload: str | None) -> None:
    svc = service()
    _, claims = issue(svc)
    header_text = header.format(kid=svc.key_id) if header else our_header(svc)
    payload_text = json.dumps(claims)[:-1] + payload.format() if payload else json.dumps(claims)
    with pytest.raises(TokenInvalidError):
        svc.verify_access(hs256(svc, header_text, payload_text))


@pytest.mark.parametrize(
    ("claim", "literal"),
    [
        ("exp", "1e400"),
        ("exp", str(10**30)),
        ("exp", "-1"),
        ("exp", "true"),
        ("exp", "NaN"),
        ("exp", "{now}.5"),
        ("iat", "-1"),
        ("iat", "1"),
        ("iat", "false"),
        ("iat", "{now}.0"),
        ("nbf", "null"),
        ("nbf", '"0"'),
        ("nbf", "0.5"),
    ],
)
def test_time_claims_are_integer_numeric_dates_within_our_lifetime(claim: str, literal: str) -> None:
    svc = service()
    _, claims = issue(svc)
    claims[claim] = "__HERE__"
    payload = json.dumps(claims).replace('"__HERE__"', literal.replace("{now}", str(int(time.time()))))
    with pytest.raises(TokenInvalidError):
        svc.verify_access(hs256(svc, our_header(svc), payload))


def test_exp_before_iat_or_beyond_the_lifetime_is_invalid_not_expired() -> None:
    svc = service()
    now = int(time.time())
    for iat, exp in ((now, now - 1), (now, now), (now - 10, now + 3600)):
        _, claims = issue(svc)
        claims.update(iat=iat, exp=exp)
        with pytest.raises(TokenInvalidError):
            svc.verify_access(hs256(svc, our_header(svc), json.dumps(claims)))


@pytest.mark.parametrize(
    "aud", [["clients", "evil"], ["evil", "clients"], ["clients", "clients"], [], ["clients-evil"]]
)
def test_audience_list_must_name_only_us(aud: list[str]) -> None:
    svc = service()
    _, claims = issue(svc)
    claims["aud"] = aud
    with pytest.raises(TokenInvalidError):
        svc.verify_access(hs256(svc, our_header(svc), json.dumps(claims)))


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "http://127.0.0.1:1/jwks.json"},
        {"x5u": "http://127.0.0.1:1/cert.pem"},
        {"jwk": {"kty": "oct", "k": "AAAA"}},
        {"x5c": ["AAAA"]},
        {"crit": ["b64"], "b64": False},
        {"b64": True},
        {"cty": "JWT"},
    ],
    ids=lambda extra: "+".join(extra),
)
def test_header_members_beyond_alg_kid_typ_are_refused(extra: dict[str, Any]) -> None:
    svc = service()
    _, claims = issue(svc)
    with pytest.raises(TokenInvalidError):
        svc.verify_access(hs256(svc, our_header(svc, **extra), json.dumps(claims)))


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode(), id="utf8-bom"),
        pytest.param(lambda text: text.encode("utf-16"), id="utf16"),
        pytest.param(lambda text: text.replace("alice", "al\u00efce").encode("latin-1"), id="latin1"),
        pytest.param(lambda text: ("[" * 1400 + "]" * 1400).encode(), id="nesting-beyond-recursion-limit"),
    ],
)
def test_payload_must_be_strict_utf8_json(encode: Any) -> None:
    svc = service()
    _, claims = issue(svc)
    with pytest.raises(TokenInvalidError):
        svc.verify_access(hs256(svc, our_header(svc), encode(json.dumps(claims))))


def test_key_file_problem_names_the_variable(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from auth_service.lib.crypto.tokens import key_file_problem

    def write(name: str) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        (tmp_path / name).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (tmp_path / f"{name}.pub").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return str(tmp_path / name)

    first, second = write("a.pem"), write("b.pem")
    assert key_file_problem("ES256", first, first + ".pub") is None
    assert key_file_problem("ES256", first, second + ".pub") == (
        "JWT_PUBLIC_KEY_FILE",
        "does not match JWT_PRIVATE_KEY_FILE",
    )
    assert key_file_problem("RS256", first, "")[0] == "JWT_PRIVATE_KEY_FILE"  # type: ignore[index]
    assert key_file_problem("ES256", str(tmp_path / "nope.pem"), "")[0] == "JWT_PRIVATE_KEY_FILE"  # type: ignore[index]
    assert key_file_problem("ES256", first + ".pub", "")[0] == "JWT_PRIVATE_KEY_FILE"  # type: ignore[index]
