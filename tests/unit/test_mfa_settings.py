"""The `mfa` settings group and RATE_LIMIT_MFA: defaults that work out of the box, the passkeys'
RP id and origins following PUBLIC_BASE_URL unless told otherwise, and every bad value one line
naming its variable."""

from __future__ import annotations

import pytest

from auth_service.settings import RateLimit, SettingsError, describe, load_settings

GOOD = {
    "DATABASE_URL": "postgresql://u@localhost/db",
    "REDIS_URL": "redis://localhost:6379/0",
    "JWT_SECRET_KEY": "x" * 32,
}


def _load(**env: str):  # type: ignore[no-untyped-def]
    return load_settings(env={**GOOD, **env}, env_file=None)


def test_the_defaults_follow_the_design() -> None:
    settings = _load()
    mfa = settings.mfa
    assert mfa.required_role_set == frozenset()
    assert mfa.token_ttl_seconds == 300 and mfa.max_attempts == 5
    assert mfa.totp_issuer == "Auth Service" and mfa.rp_name == "Auth Service"
    assert settings.limits.mfa == "10/15minute"
    assert settings.limits.parsed.mfa == RateLimit(10, 900)


def test_without_a_public_url_passkeys_work_on_localhost_at_the_apis_port() -> None:
    assert (_load().mfa.rp_id, _load().mfa.origins) == ("localhost", ["http://localhost:8000"])
    assert _load(PORT="18400").mfa.origins == ["http://localhost:18400"]


@pytest.mark.parametrize(
    ("public", "rp_id", "origins"),
    [
        ("https://auth.example.com", "auth.example.com", ["https://auth.example.com"]),
        ("https://Auth.Example.com:443/base/", "auth.example.com", ["https://auth.example.com"]),
        ("https://auth.example.com:8443", "auth.example.com", ["https://auth.example.com:8443"]),
        ("http://localhost:9000/", "localhost", ["http://localhost:9000"]),
        # An IP address cannot be an RP id: the same port on localhost, from a browser on the machine.
        ("http://127.0.0.1:18400", "localhost", ["http://localhost:18400"]),
    ],
)
def test_the_rp_id_and_origins_follow_public_base_url(public: str, rp_id: str, origins: list[str]) -> None:
    mfa = _load(PUBLIC_BASE_URL=public).mfa
    assert (mfa.rp_id, mfa.origins) == (rp_id, origins)


def test_the_rp_id_origins_name_and_roles_can_be_set() -> None:
    mfa = _load(
        PUBLIC_BASE_URL="https://auth.example.com",
        WEBAUTHN_RP_ID="example.com",
        WEBAUTHN_ORIGINS="https://auth.example.com, https://login.example.com:8443/",
        WEBAUTHN_RP_NAME="Example Login",
        TOTP_ISSUER="Example",
        MFA_REQUIRED_ROLES="admin, ops",
        MFA_TOKEN_TTL_SECONDS="120",
        MFA_MAX_ATTEMPTS="3",
    ).mfa
    assert mfa.rp_id == "example.com"
    assert mfa.origins == ["https://auth.example.com", "https://login.example.com:8443"]
    assert mfa.rp_name == "Example Login" and mfa.totp_issuer == "Example"
    assert mfa.required_role_set == {"admin", "ops"}
    assert (mfa.token_ttl_seconds, mfa.max_attempts) == (120, 3)
    # The RP id alone: the origin still comes from PUBLIC_BASE_URL.
    assert _load(PUBLIC_BASE_URL="https://auth.example.com", WEBAUTHN_RP_ID="example.com").mfa.origins == [
        "https://auth.example.com"
    ]


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"RATE_LIMIT_MFA": "lots"}, "RATE_LIMIT_MFA"),
        ({"RATE_LIMIT_MFA": ""}, "RATE_LIMIT_MFA"),
        ({"RATE_LIMIT_LOGIN": ""}, "RATE_LIMIT_LOGIN"),  # only RATE_LIMIT_VERIFY may be empty (RATE_LIMIT_API)
        ({"RATE_LIMIT_MFA": "10/0minute"}, "RATE_LIMIT_MFA"),
        ({"MFA_TOKEN_TTL_SECONDS": "soon"}, "MFA_TOKEN_TTL_SECONDS"),
        ({"MFA_TOKEN_TTL_SECONDS": "0"}, "MFA_TOKEN_TTL_SECONDS"),
        ({"MFA_TOKEN_TTL_SECONDS": "86400"}, "MFA_TOKEN_TTL_SECONDS"),
        ({"MFA_MAX_ATTEMPTS": "0"}, "MFA_MAX_ATTEMPTS"),
        ({"MFA_MAX_ATTEMPTS": "many"}, "MFA_MAX_ATTEMPTS"),
        ({"MFA_REQUIRED_ROLES": "admin,Bad Role"}, "MFA_REQUIRED_ROLES"),
        ({"TOTP_ISSUER": "Acme:Auth"}, "TOTP_ISSUER"),
        ({"TOTP_ISSUER": " "}, "TOTP_ISSUER"),
        ({"WEBAUTHN_RP_ID": "10.0.0.1"}, "WEBAUTHN_RP_ID"),
        ({"WEBAUTHN_RP_ID": "https://example.com"}, "WEBAUTHN_RP_ID"),
        ({"WEBAUTHN_ORIGINS": "auth.example.com"}, "WEBAUTHN_ORIGINS"),
        ({"WEBAUTHN_ORIGINS": "https://auth.example.com/login"}, "WEBAUTHN_ORIGINS"),
        ({"WEBAUTHN_ORIGINS": "ftp://auth.example.com"}, "WEBAUTHN_ORIGINS"),
        # An origin outside the RP id: no browser would use the passkey there.
        ({"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "https://example.org"}, "WEBAUTHN_ORIGINS"),
        ({"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "https://badexample.com"}, "WEBAUTHN_ORIGINS"),
        ({"WEBAUTHN_RP_ID": "example.com"}, "WEBAUTHN_ORIGINS"),  # the derived http://localhost:8000
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(change: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        _load(**change)
    assert [name for name, _ in caught.value.problems] == [variable]
    assert "\n" not in str(caught.value)


def test_an_install_with_any_public_url_still_starts() -> None:
    """The defaults never refuse a URL that worked before second factors existed."""
    for public in ("http://auth.internal:8000", "http://10.0.0.5:8000", "https://[::1]:8443", "https://a.b.example/x"):
        assert _load(PUBLIC_BASE_URL=public).mfa.origins


def test_every_new_variable_is_in_the_configuration_reference() -> None:
    declared = {row.variable: row for row in describe()}
    for variable in (
        "MFA_REQUIRED_ROLES",
        "RATE_LIMIT_MFA",
        "MFA_TOKEN_TTL_SECONDS",
        "MFA_MAX_ATTEMPTS",
        "TOTP_ISSUER",
        "WEBAUTHN_RP_ID",
        "WEBAUTHN_ORIGINS",
        "WEBAUTHN_RP_NAME",
    ):
        assert declared[variable].description, variable
    assert declared["MFA_TOKEN_TTL_SECONDS"].group == "mfa" and declared["RATE_LIMIT_MFA"].group == "limits"
