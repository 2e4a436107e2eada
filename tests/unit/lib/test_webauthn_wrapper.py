"""Passkeys (lib/crypto/webauthn.py): the options we send, and full ceremonies against a software
authenticator (tests/authenticator.py): registration, assertion, the sign counter, and every
refusal as one WebAuthnError."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from auth_service.lib.crypto import webauthn as wa
from tests.authenticator import SoftAuthenticator, b64url, unb64url

RP_ID = "auth.example.com"
ORIGIN = "https://auth.example.com"
ORIGINS = [ORIGIN, "https://login.example.com"]
USER_ID = uuid.uuid4().bytes


def _register(authenticator: SoftAuthenticator, **options: Any) -> tuple[wa.CeremonyOptions, wa.NewCredential]:
    opts = wa.registration_options(rp_id=RP_ID, rp_name="Example", user_id=USER_ID, user_name="alice", **options)
    new = wa.verify_registration(
        credential=authenticator.create(opts.public_key),
        expected_challenge=opts.challenge,
        rp_id=RP_ID,
        origins=ORIGINS,
    )
    return opts, new


def _assert(
    authenticator: SoftAuthenticator, stored: wa.NewCredential, sign_count: int | None = None, **answer: Any
) -> wa.Assertion:
    opts = wa.authentication_options(rp_id=RP_ID)
    return wa.verify_authentication(
        credential=authenticator.get(opts.public_key, **answer),
        expected_challenge=opts.challenge,
        rp_id=RP_ID,
        origins=ORIGINS,
        public_key=stored.public_key,
        sign_count=stored.sign_count if sign_count is None else sign_count,
    )


def test_registration_options_ask_for_no_attestation_a_resident_key_and_preferred_verification() -> None:
    existing = wa.KnownCredential(b"\x01" * 16, ("usb", "bogus"))
    opts = wa.registration_options(
        rp_id=RP_ID, rp_name="Example", user_id=USER_ID, user_name="alice", exclude=[existing]
    )
    body = opts.public_key
    json.dumps(body)  # plain JSON, ready for the wire
    assert body["rp"] == {"id": RP_ID, "name": "Example"}
    assert body["user"] == {"id": b64url(USER_ID), "name": "alice", "displayName": "alice"}
    assert unb64url(body["challenge"]) == opts.challenge and len(opts.challenge) >= 32
    assert body["attestation"] == "none"
    assert body["authenticatorSelection"] == {
        "residentKey": "preferred",
        "requireResidentKey": False,
        "userVerification": "preferred",
    }
    assert [p["alg"] for p in body["pubKeyCredParams"]] == [-7, -8, -257]
    assert body["excludeCredentials"] == [{"id": b64url(b"\x01" * 16), "type": "public-key", "transports": ["usb"]}]
    assert body["timeout"] == 60000


def test_a_required_resident_key_is_asked_as_required() -> None:
    opts = wa.registration_options(
        rp_id=RP_ID, rp_name="Example", user_id=USER_ID, user_name="alice", resident_key="required"
    )
    assert opts.public_key["authenticatorSelection"]["residentKey"] == "required"
    assert opts.public_key["authenticatorSelection"]["requireResidentKey"] is True


def test_every_ceremony_gets_a_fresh_challenge() -> None:
    challenges = {wa.authentication_options(rp_id=RP_ID).challenge for _ in range(20)}
    assert len(challenges) == 20


def test_authentication_options_name_the_users_credentials_or_none_for_a_discoverable_login() -> None:
    second_factor = wa.authentication_options(rp_id=RP_ID, allow=[wa.KnownCredential(b"\x02" * 16, ("internal",))])
    assert second_factor.public_key["rpId"] == RP_ID
    assert second_factor.public_key["allowCredentials"] == [
        {"id": b64url(b"\x02" * 16), "type": "public-key", "transports": ["internal"]}
    ]
    assert second_factor.public_key["userVerification"] == "preferred"
    passwordless = wa.authentication_options(rp_id=RP_ID, user_verification="required")
    assert passwordless.public_key.get("allowCredentials", []) == []
    assert passwordless.public_key["userVerification"] == "required"


def test_an_empty_rp_id_is_a_webauthn_error() -> None:
    with pytest.raises(wa.WebAuthnError):
        wa.registration_options(rp_id="", rp_name="Example", user_id=USER_ID, user_name="alice")
    with pytest.raises(wa.WebAuthnError):
        wa.authentication_options(rp_id="")


def test_a_passkey_registers_and_then_signs_in_with_a_rising_counter() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    _, new = _register(authenticator)
    assert new.credential_id == authenticator.credential_id
    assert new.sign_count == 0 and new.aaguid == "00000000-0000-0000-0000-000000000000"
    assert new.backup_eligible and new.backed_up and new.user_verified
    assert new.transports == ["internal", "hybrid"]
    credential = authenticator.get(wa.authentication_options(rp_id=RP_ID).public_key)
    assert wa.assertion_credential_id(credential) == authenticator.credential_id
    assert wa.assertion_user_handle(credential) == USER_ID
    first = _assert(authenticator, new)
    assert first.credential_id == authenticator.credential_id and first.new_sign_count == 2
    assert first.backed_up and first.user_verified
    assert _assert(authenticator, new, sign_count=first.new_sign_count).new_sign_count == 3


def test_a_single_device_key_is_stored_as_not_backup_eligible() -> None:
    _, new = _register(SoftAuthenticator(origin=ORIGIN, backup_eligible=False, backed_up=False))
    assert not new.backup_eligible and not new.backed_up


def test_another_origin_in_the_list_is_accepted() -> None:
    authenticator = SoftAuthenticator(origin="https://login.example.com")
    _, new = _register(authenticator)
    assert _assert(authenticator, new).new_sign_count == 1


@pytest.mark.parametrize(
    ("new", "stored", "ok"),
    [(1, 0, True), (6, 5, True), (0, 0, True), (5, 5, False), (4, 5, False), (0, 5, False)],
)
def test_the_clone_check_wants_the_counter_to_rise_unless_it_is_always_zero(new: int, stored: int, ok: bool) -> None:
    assert wa.sign_count_ok(new, stored) is ok


def test_a_clone_replaying_a_lower_counter_is_refused_as_a_clone() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    _, new = _register(authenticator)
    last = _assert(authenticator, new).new_sign_count
    for stale in (last, last - 1, 0):
        with pytest.raises(wa.ClonedAuthenticatorError):
            _assert(authenticator, new, sign_count=last, count=stale)


def test_an_authenticator_that_never_counts_is_not_a_clone() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN, counts=False)
    _, new = _register(authenticator)
    assert _assert(authenticator, new).new_sign_count == 0
    assert _assert(authenticator, new).new_sign_count == 0


def test_a_forged_signature_is_refused_and_never_reported_as_a_clone() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    _, new = _register(authenticator)
    impostor = SoftAuthenticator(origin=ORIGIN, credential_id=authenticator.credential_id)
    with pytest.raises(wa.WebAuthnError) as caught:
        _assert(impostor, new, sign_count=5, count=1)
    assert type(caught.value) is wa.WebAuthnError


def _registration_refusal(change: str) -> wa.WebAuthnError:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    opts = wa.registration_options(rp_id=RP_ID, rp_name="Example", user_id=USER_ID, user_name="alice")
    credential: Any = authenticator.create(
        opts.public_key, origin="https://evil.example.net" if change == "origin" else None
    )
    challenge, rp_id = opts.challenge, RP_ID
    if change == "challenge":
        challenge = wa.authentication_options(rp_id=RP_ID).challenge
    elif change == "rp_id":
        rp_id = "example.org"
    elif change == "truncated":
        credential["response"]["attestationObject"] = credential["response"]["attestationObject"][:40]
    elif change == "garbage":
        credential = "{not json"
    elif change == "not base64":
        credential["response"]["clientDataJSON"] = "!!!"
    elif change == "not an object":
        credential = [1, 2, 3]
    with pytest.raises(wa.WebAuthnError) as caught:
        wa.verify_registration(credential=credential, expected_challenge=challenge, rp_id=rp_id, origins=ORIGINS)
    return caught.value


@pytest.mark.parametrize(
    "change", ["origin", "challenge", "rp_id", "truncated", "garbage", "not base64", "not an object"]
)
def test_a_registration_that_does_not_match_its_ceremony_is_one_error_without_secrets(change: str) -> None:
    error = _registration_refusal(change)
    assert type(error) is wa.WebAuthnError
    message = str(error)
    assert "\n" not in message and len(message) <= 160


def test_an_assertion_that_does_not_match_its_ceremony_is_refused() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    _, new = _register(authenticator)
    opts = wa.authentication_options(rp_id=RP_ID)
    kwargs: dict[str, Any] = {"rp_id": RP_ID, "origins": ORIGINS, "public_key": new.public_key, "sign_count": 0}
    cases = [
        (authenticator.get(opts.public_key), wa.authentication_options(rp_id=RP_ID).challenge),  # another challenge
        (authenticator.get(opts.public_key, origin="https://evil.example.net"), opts.challenge),
        (authenticator.get(opts.public_key, rp_id="example.org"), opts.challenge),
        ({"id": "x"}, opts.challenge),
        ("null", opts.challenge),
    ]
    for credential, challenge in cases:
        with pytest.raises(wa.WebAuthnError) as caught:
            wa.verify_authentication(credential=credential, expected_challenge=challenge, **kwargs)
        assert type(caught.value) is wa.WebAuthnError
    with pytest.raises(wa.WebAuthnError):
        wa.assertion_credential_id("{")


def test_user_verification_can_be_required_for_a_passwordless_login() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN, user_verified=False)
    _, new = _register(authenticator)
    opts = wa.authentication_options(rp_id=RP_ID, user_verification="required")
    with pytest.raises(wa.WebAuthnError, match="not verified"):
        wa.verify_authentication(
            credential=authenticator.get(opts.public_key),
            expected_challenge=opts.challenge,
            rp_id=RP_ID,
            origins=ORIGINS,
            public_key=new.public_key,
            sign_count=0,
            require_user_verification=True,
        )
