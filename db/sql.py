"""What every repository's prebuilt statements share: the tables, and typed bind parameters.

The login and refresh hot paths run prebuilt Core statements with bound parameters: no ORM
unit of work, no per-request statement construction, and a cache key computed once per
statement (SQLAlchemy memoizes it on the object). They use the generic `insert`: the PostgreSQL
dialect's has no cache key, so every execution would compile the whole statement again. They
still run on the request's session, so the pool pre-ping and the OTel SQL spans apply as to
every other query.

Bind parameters of a statement holding an UPDATE never take a column's name: SQLAlchemy turns
an execute parameter named like a column into a SET of that column (even inside a CTE).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam

from db.models import (
    AuditEvent,
    LoginRecord,
    MfaRecoveryCode,
    MfaTotp,
    Notification,
    RefreshToken,
    User,
    UserToken,
    WebAuthnCredential,
)

__all__ = [
    "audit_events",
    "login_records",
    "mfa_recovery_codes",
    "mfa_totp",
    "notifications",
    "param",
    "refresh_tokens",
    "user_tokens",
    "users",
    "webauthn_credentials",
]

users = cast(Table, User.__table__)
audit_events = cast(Table, AuditEvent.__table__)
refresh_tokens = cast(Table, RefreshToken.__table__)
login_records = cast(Table, LoginRecord.__table__)
notifications = cast(Table, Notification.__table__)
user_tokens = cast(Table, UserToken.__table__)
mfa_totp = cast(Table, MfaTotp.__table__)
mfa_recovery_codes = cast(Table, MfaRecoveryCode.__table__)
webauthn_credentials = cast(Table, WebAuthnCredential.__table__)


def param(name: str, column: Any) -> BindParameter[Any]:
    """A bind parameter typed like `column`."""
    return bindparam(name, type_=column.type)
