"""TOTP (lib/crypto/totp.py): RFC 6238's own vectors, the ±1 step window, replay by step, and the
secret's encryption bound to its user."""

from __future__ import annotations

import base64
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from auth_service.lib.crypto import totp
from auth_service.lib.crypto.derive import PurposeKeys

# RFC 6238 appendix B (SHA-1 seed "12345678901234567890"), the last six digits of each code.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924")]
KEY = PurposeKeys(b"m" * 32, b"s" * 32).key("totp")
NOW = 1_800_000_015.0  # 15 s into a step


def _code(secret: str, at: float) -> str:
    return pyotp.TOTP(secret).at(at)


@pytest.mark.parametrize(("at", "code"), RFC_VECTORS)
def test_the_codes_are_rfc_6238s(at: int, code: str) -> None:
    assert totp.matching_step(RFC_SECRET, code, at, None) == at // 30


def test_a_new_secret_is_160_bits_of_base32_and_never_repeats() -> None:
    secrets = {totp.new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) == 20


@pytest.mark.parametrize("offset", [-30, 0, 30])
def test_the_previous_the_current_and_the_next_step_are_accepted(offset: int) -> None:
    secret = totp.new_secret()
    assert totp.matching_step(secret, _code(secret, NOW + offset), NOW, None) == totp.current_step(NOW + offset)


@pytest.mark.parametrize("offset", [-90, -60, 60, 90])
def test_two_steps_off_is_refused(offset: int) -> None:
    secret = totp.new_secret()
    code = _code(secret, NOW + offset)
    if code in {_code(secret, NOW + d) for d in (-30, 0, 30)}:
        pytest.skip("the codes of two steps collided (one in ~300 000)")
    assert totp.matching_step(secret, code, NOW, None) is None


def test_a_code_is_accepted_once_and_never_for_a_step_at_or_before_the_last_used() -> None:
    secret = totp.new_secret()
    code = _code(secret, NOW)
    step = totp.matching_step(secret, code, NOW, None)
    assert step == totp.current_step(NOW)
    assert totp.matching_step(secret, code, NOW, step) is None  # the same code again
    assert totp.matching_step(secret, code, NOW + 30, step) is None  # still in the window, a step later
    assert totp.matching_step(secret, _code(secret, NOW - 30), NOW, step) is None  # an older code
    assert totp.matching_step(secret, _code(secret, NOW + 30), NOW, step) == step + 1  # the next one is new


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "12345a", "١٢٣٤٥٦", "123-456", "12345\n"])
def test_anything_but_six_ascii_digits_is_refused(typed: str) -> None:
    assert totp.matching_step(RFC_SECRET, typed, 59, None) is None


def test_the_code_may_be_typed_with_a_space_as_apps_show_it() -> None:
    assert totp.matching_step(RFC_SECRET, "287 082", 59, None) == 1


def test_the_otpauth_uri_names_issuer_and_account_and_carries_the_secret() -> None:
    secret = totp.new_secret()
    uri = totp.otpauth_uri(secret, account_name="alice@example.com", issuer="Acme Auth")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/Acme%20Auth:alice%40example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret] and query["issuer"] == ["Acme Auth"]
    assert pyotp.parse_uri(uri).now() == pyotp.TOTP(secret).now()


def test_the_qr_code_is_one_scalable_svg_element_fit_for_json() -> None:
    svg = totp.qr_svg(totp.otpauth_uri(totp.new_secret(), account_name="alice", issuer="Auth Service"))
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "\n" not in svg
    assert 'xmlns="http://www.w3.org/2000/svg"' in svg and "viewBox=" in svg
    opening = svg.split(">", 1)[0]
    assert " width=" not in opening and " height=" not in opening


def test_the_secret_round_trips_encrypted_and_only_for_its_user() -> None:
    secret, user, other = totp.new_secret(), uuid.uuid4(), uuid.uuid4()
    stored = totp.encrypt_secret(KEY, secret, user)
    assert secret.encode() not in stored and len(stored) == 12 + len(secret) + 16
    assert totp.decrypt_secret(KEY, stored, user) == secret
    assert totp.encrypt_secret(KEY, secret, user)[:12] != stored[:12]  # a fresh nonce each time
    with pytest.raises(totp.UndecryptableSecretError):
        totp.decrypt_secret(KEY, stored, other)  # a row copied to another account
    with pytest.raises(totp.UndecryptableSecretError):
        totp.decrypt_secret(PurposeKeys(b"n" * 32, b"s" * 32).key("totp"), stored, user)
    tampered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(totp.UndecryptableSecretError):
        totp.decrypt_secret(KEY, tampered, user)
    with pytest.raises(totp.UndecryptableSecretError):
        totp.decrypt_secret(KEY, stored[:12], user)
