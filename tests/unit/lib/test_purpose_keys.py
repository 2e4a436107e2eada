"""Purpose keys (lib/crypto/derive.py): what an install had before them keeps working after the
upgrade, and with SECRET_KEY set a change of the signing key breaks no link and no refresh grace."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import pytest

from auth_service.container import Resources
from auth_service.lib.crypto.derive import PURPOSES, PurposeKeys
from auth_service.settings import load_settings

K1 = "k1-" + "a" * 40
K2 = "k2-" + "b" * 40
MASTER = "m-" + "c" * 40
BASE = {"DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0"}


def _settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings(env={**BASE, **env}, env_file=None)


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _before_upgrade_reset_token(secret: str, token_id: uuid.UUID) -> str:
    """A reset link's token as the code before purpose keys made it."""
    key = hmac.new(secret.encode(), b"account-link-v1", hashlib.sha256).digest()
    return f"{token_id.hex}.{_b64(hmac.new(key, f'reset:{token_id.hex}'.encode(), hashlib.sha256).digest())}"


def _before_upgrade_not_me_mac(secret: str, payload: str) -> bytes:
    key = hmac.new(secret.encode(), b"email-link-v1", hashlib.sha256).digest()
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()


def _before_upgrade_successor(secret: str, refresh_token: str) -> str:
    key = hmac.new(secret.encode(), b"refresh-rotation", hashlib.sha256).digest()
    family = refresh_token.partition(".")[0]
    return f"{family}.{_b64(hmac.new(key, refresh_token.encode(), hashlib.sha256).digest())}"


def test_an_install_with_only_jwt_secret_key_keeps_its_links_and_refresh_graces() -> None:
    settings = _settings(JWT_SECRET_KEY=K1)
    token_id = uuid.uuid4()
    # A reset link mailed before the upgrade is still one of ours after it.
    old_reset = _before_upgrade_reset_token(K1, token_id)
    assert Resources(settings).account_links.parse(old_reset, "reset") == token_id
    # A "this wasn't me" link signed before the upgrade verifies after it.
    signer = Resources(settings).links
    fresh = signer.sign(uuid.uuid4(), uuid.uuid4())
    payload = fresh.partition(".")[0]
    old_link = f"{payload}.{_b64(_before_upgrade_not_me_mac(K1, payload))}"
    assert old_link == fresh and signer.verify(old_link) is not None
    # A refresh repeated within the grace after the upgrade gets the successor it got before.
    refresh = "0123456789abcdef0123456789abcdef.some-random-part"
    assert Resources(settings).tokens.successor_of(refresh) == _before_upgrade_successor(K1, refresh)


def test_with_secret_key_set_a_new_signing_key_breaks_no_link_and_no_refresh_grace() -> None:
    before = _settings(JWT_SECRET_KEY=K1, SECRET_KEY=MASTER)
    after = _settings(JWT_SECRET_KEY=K2, SECRET_KEY=MASTER)
    token_id = uuid.uuid4()
    reset = Resources(before).account_links.token(token_id, "reset")
    assert Resources(after).account_links.parse(reset, "reset") == token_id
    not_me = Resources(before).links.sign(uuid.uuid4(), uuid.uuid4())
    assert Resources(after).links.verify(not_me) is not None
    refresh = "0123456789abcdef0123456789abcdef.some-random-part"
    assert Resources(after).tokens.successor_of(refresh) == Resources(before).tokens.successor_of(refresh)
    # …and the keys are no longer the signing key's: the legacy derivation gives other ones.
    assert Resources(_settings(JWT_SECRET_KEY=K1)).account_links.parse(reset, "reset") is None
    # The database role's password follows SECRET_KEY too.
    assert after.database.service_password == before.database.service_password


def test_without_secret_key_a_new_signing_key_still_ends_them_as_it_always_did() -> None:
    token_id = uuid.uuid4()
    reset = Resources(_settings(JWT_SECRET_KEY=K1)).account_links.token(token_id, "reset")
    assert Resources(_settings(JWT_SECRET_KEY=K2)).account_links.parse(reset, "reset") is None


def test_every_purpose_has_its_own_key_and_none_is_the_master() -> None:
    keys = PurposeKeys(MASTER.encode(), K1.encode())
    derived = [keys.key(purpose) for purpose in PURPOSES]
    assert len(set(derived)) == len(PURPOSES) and all(len(key) == 32 for key in derived)
    assert MASTER.encode() not in derived and K1.encode() not in derived
    with pytest.raises(ValueError, match="unknown key purpose"):
        keys.key("nonsense")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "words"), [("short", "at least 32 bytes"), ("your-256-bit-secret", "well-known"), (K1, "must differ")]
)
def test_a_bad_secret_key_is_one_line_naming_it(value: str, words: str) -> None:
    from auth_service.settings import SettingsError

    with pytest.raises(SettingsError) as caught:
        _settings(JWT_SECRET_KEY=K1, SECRET_KEY=value)
    [(name, message)] = caught.value.problems
    assert name == "SECRET_KEY" and words in message
