"""WebAuthn passkeys (the `webauthn` package, py_webauthn): the options of both ceremonies, their
verification, and the sign-counter rule.

Our choices, fixed here: attestation `none` (we trust no vendor list, we only want the key), user
verification preferred, resident (discoverable) keys preferred or required, and an explicit
algorithm allow-list (ES256, EdDSA, RS256). The caller keeps each ceremony's challenge (single
use, short-lived) and the stored credential; nothing here touches Redis or the database.

Every failure, whatever the library or the attacker-controlled bytes raised, becomes one
`WebAuthnError` with a short message and no secret data; `ClonedAuthenticatorError`, its one
subclass, is a valid signature with a counter that went backwards (a cloned authenticator), which
the caller refuses and logs. The counter is checked here, after the signature, not by the library:
a forged response must never be reported as a clone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

__all__ = [
    "ALGORITHMS",
    "TRANSPORTS",
    "Assertion",
    "CeremonyOptions",
    "ClonedAuthenticatorError",
    "KnownCredential",
    "NewCredential",
    "WebAuthnError",
    "assertion_credential_id",
    "assertion_user_handle",
    "authentication_options",
    "registration_options",
    "sign_count_ok",
    "verify_authentication",
    "verify_registration",
]

ALGORITHMS: tuple[COSEAlgorithmIdentifier, ...] = (
    COSEAlgorithmIdentifier.ECDSA_SHA_256,  # -7: what nearly every authenticator makes
    COSEAlgorithmIdentifier.EDDSA,  # -8
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,  # -257: Windows Hello
)
TRANSPORTS = frozenset(transport.value for transport in AuthenticatorTransport)
DEFAULT_TIMEOUT_MS = 60_000
_MESSAGE_MAX = 160


class WebAuthnError(Exception):
    """A ceremony that cannot be verified (str(): why, without secret data)."""

    def __init__(self, message: str) -> None:
        super().__init__(message[:_MESSAGE_MAX])


class ClonedAuthenticatorError(WebAuthnError):
    """A valid assertion whose sign counter is not above the stored one: a clone, refused."""


@dataclass(frozen=True, slots=True)
class KnownCredential:
    """A stored credential as the options name it (to exclude at registration, allow at assertion)."""

    credential_id: bytes
    transports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CeremonyOptions:
    """Options for `navigator.credentials.create()`/`.get()` and the challenge to keep.

    `public_key` is the JSON form (base64url bytes, camelCase keys: PublicKeyCredentialCreation-/
    RequestOptionsJSON) the browser's `PublicKeyCredential.parse*OptionsFromJSON` takes.
    """

    challenge: bytes
    public_key: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewCredential:
    """What to store of a verified registration."""

    credential_id: bytes
    public_key: bytes  # COSE_Key
    sign_count: int
    aaguid: str  # the authenticator model, "00000000-0000-0000-0000-000000000000" with attestation none
    backup_eligible: bool
    backed_up: bool
    transports: list[str] = field(default_factory=list)
    user_verified: bool = False


@dataclass(frozen=True, slots=True)
class Assertion:
    """What a verified assertion changes on the stored credential."""

    credential_id: bytes
    new_sign_count: int
    backed_up: bool
    user_verified: bool


def _descriptors(credentials: Sequence[KnownCredential]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=known.credential_id,
            transports=[AuthenticatorTransport(t) for t in known.transports if t in TRANSPORTS] or None,
        )
        for known in credentials
    ]


def registration_options(
    *,
    rp_id: str,
    rp_name: str,
    user_id: bytes,
    user_name: str,
    user_display_name: str | None = None,
    exclude: Sequence[KnownCredential] = (),
    resident_key: Literal["preferred", "required"] = "preferred",
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> CeremonyOptions:
    """Options to create a passkey for a user.

    Args:
        rp_id: the relying party id (a registrable domain, WEBAUTHN_RP_ID).
        rp_name: what the browser shows (WEBAUTHN_RP_NAME).
        user_id: the user handle, opaque bytes (the user's UUID bytes; never an address).
        user_name: the account's name, shown in the passkey chooser.
        user_display_name: defaults to `user_name`.
        exclude: the user's existing credentials (an authenticator holding one refuses a second).
        resident_key: "required" for a passkey that must work without a username.
        timeout_ms: a hint to the browser.

    Raises:
        WebAuthnError: an argument the library refuses (an empty rp id or name).
    """
    try:
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name=rp_name,
            user_id=user_id,
            user_name=user_name,
            user_display_name=user_display_name,
            timeout=timeout_ms,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement(resident_key),
                require_resident_key=resident_key == "required",
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=_descriptors(exclude),
            supported_pub_key_algs=list(ALGORITHMS),
        )
    except ValueError as exc:
        raise WebAuthnError(f"registration options refused: {exc}") from None
    return CeremonyOptions(challenge=options.challenge, public_key=options_to_json_dict(options))


def _parse_registration(credential: str | dict[str, Any]) -> RegistrationCredential:
    try:
        return parse_registration_credential_json(credential)
    except Exception:  # any failure on attacker-controlled bytes is a refusal
        raise WebAuthnError("registration response is malformed") from None


def verify_registration(
    *,
    credential: str | dict[str, Any],
    expected_challenge: bytes,
    rp_id: str,
    origins: Sequence[str],
    require_user_verification: bool = False,
) -> NewCredential:
    """Check the browser's answer to `navigator.credentials.create()`.

    Args:
        credential: its JSON (`PublicKeyCredential.toJSON()`), as text or parsed.
        expected_challenge: the challenge of the options this answers (kept by the caller).
        rp_id: the relying party id of those options.
        origins: every origin the ceremony may come from (WEBAUTHN_ORIGINS).
        require_user_verification: refuse an authenticator that did not verify the user.

    Raises:
        WebAuthnError: anything wrong: format, challenge, origin, rp id, signature, algorithm.
    """
    parsed = _parse_registration(credential)
    try:
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=rp_id,
            expected_origin=list(origins),
            require_user_verification=require_user_verification,
            supported_pub_key_algs=list(ALGORITHMS),
        )
    except Exception as exc:  # the library's own errors, and whatever malformed CBOR raises
        raise WebAuthnError(f"registration refused: {_reason(exc)}") from None
    transports = [t.value for t in parsed.response.transports or []]
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        transports=transports,
        user_verified=verified.user_verified,
    )


def authentication_options(
    *,
    rp_id: str,
    allow: Sequence[KnownCredential] = (),
    user_verification: Literal["preferred", "required"] = "preferred",
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> CeremonyOptions:
    """Options for `navigator.credentials.get()`: the user's credentials (a second factor), or
    none at all (passwordless: the browser offers the discoverable passkeys of `rp_id`).

    Raises:
        WebAuthnError: an empty rp id.
    """
    try:
        options = generate_authentication_options(
            rp_id=rp_id,
            timeout=timeout_ms,
            allow_credentials=_descriptors(allow),
            user_verification=UserVerificationRequirement(user_verification),
        )
    except ValueError as exc:
        raise WebAuthnError(f"authentication options refused: {exc}") from None
    return CeremonyOptions(challenge=options.challenge, public_key=options_to_json_dict(options))


def _parse_assertion(credential: str | dict[str, Any]) -> AuthenticationCredential:
    try:
        return parse_authentication_credential_json(credential)
    except Exception:  # any failure on attacker-controlled bytes is a refusal
        raise WebAuthnError("authentication response is malformed") from None


def assertion_credential_id(credential: str | dict[str, Any]) -> bytes:
    """Which credential an assertion claims to be from (to load it before verifying).

    Raises:
        WebAuthnError: malformed.
    """
    return _parse_assertion(credential).raw_id


def assertion_user_handle(credential: str | dict[str, Any]) -> bytes | None:
    """The user handle a discoverable credential returns (None: the authenticator sent none).

    Raises:
        WebAuthnError: malformed.
    """
    return _parse_assertion(credential).response.user_handle


def sign_count_ok(new: int, stored: int) -> bool:
    """The clone check: the counter must go up, except for authenticators that never count
    (both 0, as most synced passkeys do)."""
    return (new == 0 and stored == 0) or new > stored


def verify_authentication(
    *,
    credential: str | dict[str, Any],
    expected_challenge: bytes,
    rp_id: str,
    origins: Sequence[str],
    public_key: bytes,
    sign_count: int,
    require_user_verification: bool = False,
) -> Assertion:
    """Check the browser's answer to `navigator.credentials.get()` against the stored credential.

    Args:
        credential: its JSON, as text or parsed.
        expected_challenge: the challenge of the options this answers.
        rp_id: the relying party id.
        origins: every origin the ceremony may come from.
        public_key: the stored COSE key of the credential the assertion names.
        sign_count: the stored counter.
        require_user_verification: refuse an assertion without user verification (passwordless).

    Raises:
        ClonedAuthenticatorError: the signature is valid but the counter did not go up.
        WebAuthnError: anything else wrong.
    """
    parsed = _parse_assertion(credential)
    try:
        # Counter 0 to the library: it would refuse a clone as any other error; we tell them apart.
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=rp_id,
            expected_origin=list(origins),
            credential_public_key=public_key,
            credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except Exception as exc:  # the library's own errors, and whatever malformed bytes raise
        raise WebAuthnError(f"authentication refused: {_reason(exc)}") from None
    if not sign_count_ok(verified.new_sign_count, sign_count):
        raise ClonedAuthenticatorError(
            f"sign counter {verified.new_sign_count} is not above the stored {sign_count}: a cloned authenticator?"
        )
    return Assertion(
        credential_id=verified.credential_id,
        new_sign_count=verified.new_sign_count,
        backed_up=verified.credential_backed_up,
        user_verified=verified.user_verified,
    )


def _reason(exc: Exception) -> str:
    """The library's message, on one line (it names what failed; the values it quotes are the
    client's own, such as the origin it claimed), or the exception's kind for anything else."""
    if isinstance(exc, WebAuthnException):  # (the cause it points to is dropped: it may quote bytes)
        return " ".join(str(exc).replace(" See __cause__ for more info", "").split())
    return type(exc).__name__
