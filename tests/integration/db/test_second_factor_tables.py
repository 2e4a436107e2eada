"""The second-factor tables (migration 0009) as the service role uses them: what lib/crypto
produces is stored and read back, each factor is unique where it must be, and every factor goes
with its user."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.lib.crypto import recovery_codes, totp
from auth_service.settings import Settings
from db.models import MfaRecoveryCode, MfaTotp, User, WebAuthnCredential
from tests.factories import create_user


def _credential(user_id: uuid.UUID, credential_id: bytes | None = None) -> WebAuthnCredential:
    return WebAuthnCredential(
        user_id=user_id,
        credential_id=credential_id or uuid.uuid4().bytes * 2,
        public_key=b"\xa5\x01\x02\x03\x26",
        sign_count=0,
        aaguid=str(uuid.UUID(int=0)),
        transports=["internal", "hybrid"],
        backup_eligible=True,
        backed_up=True,
        name="Laptop",
    )


async def test_the_service_role_stores_and_reads_back_every_factor(
    settings: Settings, db_session: AsyncSession
) -> None:
    user = await create_user(settings)
    keys = settings.purpose_keys
    secret = totp.new_secret()
    codes = recovery_codes.generate_codes()
    db_session.add(MfaTotp(user_id=user.id, secret_ciphertext=totp.encrypt_secret(keys.key("totp"), secret, user.id)))
    db_session.add_all(
        MfaRecoveryCode(user_id=user.id, code_hash=recovery_codes.hash_code(keys.key("recovery-code"), code, user.id))
        for code in codes
    )
    db_session.add(_credential(user.id, b"cred-1"))
    await db_session.commit()

    row = (await db_session.execute(select(MfaTotp).where(MfaTotp.user_id == user.id))).scalar_one()
    assert totp.decrypt_secret(keys.key("totp"), row.secret_ciphertext, user.id) == secret
    assert row.confirmed_at is None and row.last_used_step is None and row.created_at is not None
    # A step is spent in one conditional statement (two requests with one code: one wins).
    step = totp.current_step()
    spend = (
        update(MfaTotp)
        .where(MfaTotp.user_id == user.id, func.coalesce(MfaTotp.last_used_step, -1) < step)
        .values(last_used_step=step, confirmed_at=dt.datetime.now(dt.UTC))
    )
    assert (await db_session.execute(spend)).rowcount == 1
    assert (await db_session.execute(spend)).rowcount == 0
    wanted = recovery_codes.lookup_hash(keys.key("recovery-code"), codes[4].upper(), user.id)
    used = (
        update(MfaRecoveryCode)
        .where(
            MfaRecoveryCode.user_id == user.id, MfaRecoveryCode.code_hash == wanted, MfaRecoveryCode.used_at.is_(None)
        )
        .values(used_at=func.now())
    )
    assert (await db_session.execute(used)).rowcount == 1
    assert (await db_session.execute(used)).rowcount == 0
    left = select(func.count()).where(MfaRecoveryCode.user_id == user.id, MfaRecoveryCode.used_at.is_(None))
    assert (await db_session.execute(left)).scalar_one() == 9
    passkey = (
        await db_session.execute(select(WebAuthnCredential).where(WebAuthnCredential.credential_id == b"cred-1"))
    ).scalar_one()
    assert passkey.transports == ["internal", "hybrid"] and passkey.backup_eligible and passkey.last_used_at is None
    await db_session.execute(update(WebAuthnCredential).where(WebAuthnCredential.id == passkey.id).values(sign_count=7))
    await db_session.execute(delete(WebAuthnCredential).where(WebAuthnCredential.id == passkey.id))
    await db_session.commit()


async def test_a_passkey_belongs_to_one_user_a_code_is_stored_once_and_a_user_has_one_totp(
    settings: Settings, db_session: AsyncSession
) -> None:
    alice, bob = await create_user(settings), await create_user(settings)
    db_session.add(_credential(alice.id, b"shared"))
    await db_session.commit()
    db_session.add(_credential(bob.id, b"shared"))
    with pytest.raises(IntegrityError, match="uq_webauthn_credentials_credential_id"):
        await db_session.commit()
    await db_session.rollback()

    db_session.add_all(
        [MfaRecoveryCode(user_id=alice.id, code_hash="a" * 64), MfaRecoveryCode(user_id=bob.id, code_hash="a" * 64)]
    )
    await db_session.commit()
    db_session.add(MfaRecoveryCode(user_id=alice.id, code_hash="a" * 64))
    with pytest.raises(IntegrityError, match="uq_mfa_recovery_codes_user_id_code_hash"):
        await db_session.commit()
    await db_session.rollback()

    db_session.add(MfaTotp(user_id=alice.id, secret_ciphertext=b"x" * 40))
    await db_session.commit()
    db_session.add(MfaTotp(user_id=alice.id, secret_ciphertext=b"y" * 40))
    with pytest.raises(IntegrityError, match="pk_mfa_totp"):
        await db_session.commit()
    await db_session.rollback()


async def test_every_factor_goes_with_its_user(settings: Settings, db_session: AsyncSession) -> None:
    user, other = await create_user(settings), await create_user(settings)
    for owner in (user, other):
        db_session.add(MfaTotp(user_id=owner.id, secret_ciphertext=b"x" * 40))
        db_session.add(MfaRecoveryCode(user_id=owner.id, code_hash="b" * 64))
        db_session.add(_credential(owner.id))
    await db_session.commit()
    await db_session.execute(delete(User).where(User.id == user.id))
    await db_session.commit()
    for model in (MfaTotp, MfaRecoveryCode, WebAuthnCredential):
        owners = (await db_session.execute(select(model.user_id))).scalars().all()
        assert owners == [other.id], model.__tablename__
