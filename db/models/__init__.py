"""The tables: one module per table, re-exported here for Alembic and the repositories."""

from __future__ import annotations

from advanced_alchemy.base import orm_registry

from db.models.audit_event import AuditEvent
from db.models.login_record import LoginRecord
from db.models.mfa_recovery_code import MfaRecoveryCode
from db.models.mfa_totp import MfaTotp
from db.models.notification import Notification
from db.models.oauth_client import OAuthClient, OAuthConsent
from db.models.refresh_token import RefreshToken
from db.models.signing_key import SigningKey
from db.models.token_blacklist import TokenBlacklist
from db.models.user import User, identity_key, owns_its_address, unclaimed_email_key
from db.models.user_token import UserToken
from db.models.webauthn_credential import WebAuthnCredential

metadata = orm_registry.metadata

__all__ = [
    "AuditEvent",
    "LoginRecord",
    "MfaRecoveryCode",
    "MfaTotp",
    "Notification",
    "OAuthClient",
    "OAuthConsent",
    "RefreshToken",
    "SigningKey",
    "TokenBlacklist",
    "User",
    "UserToken",
    "WebAuthnCredential",
    "identity_key",
    "metadata",
    "owns_its_address",
    "unclaimed_email_key",
]
