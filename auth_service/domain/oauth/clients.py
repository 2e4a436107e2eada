"""The OAuth client registry: registered clients, their secrets, and the rules they follow
(client_rules.py), for the admin API, the CLI and the OAuth provider.

- A client's id is 128 random bits, URL-safe (`secrets.token_urlsafe(16)`). A confidential
  client's secret is 256 random bits (`secrets.token_urlsafe(32)`), shown once and stored only as
  its SHA-256: a secret that cannot be guessed needs no slow hash (like a refresh token's,
  lib/crypto/tokens.py `hash_refresh_token`). A public client has none; it proves itself with PKCE.
- `authenticate` costs the same for an unknown or inactive client as for a wrong secret: one
  indexed read, one SHA-256, one constant-time comparison (against a dummy digest when there is
  nothing to compare with), so timing tells no one which client ids exist.
- Deleting or deactivating a client ends every session opened through it (refresh families with
  its `client_id`), by the revocation protocol (domain/sessions/revocation.py) for each owner:
  their rows locked, the families revoked in PostgreSQL, their Redis state dropped, then the
  commit, so their access tokens stop passing verify at once on every instance. A secret
  rotation ends no session: the old secret stops working at the commit.
- Every change writes its audit event (`client.create`, `client.update`, `client.delete`,
  `client.secret_rotate`; target_type "client") in its own transaction.

The provider's side of the lock order: a transaction that opens or rotates a session through a
client reads the client with `get(client_id, share_lock=True)` before it touches the user's row.
A deletion or deactivation locks the client row for update first, so an opening either commits
before it (and its family is revoked with the rest) or waits and then finds the client gone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import uuid
from typing import Any

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.oauth.client_repository import ClientRepository
from auth_service.domain.oauth.client_rules import ClientSpec, check_client
from auth_service.domain.oauth.client_schemas import (
    CLIENT_ID_PATTERN,
    ClientCreate,
    ClientCreated,
    ClientPage,
    ClientPatch,
    ClientRead,
)
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.lib.audit import Actor, AuditEntry, record
from auth_service.lib.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from observability.metrics import record_session_revoked

__all__ = [
    "CURSOR_PATTERN",
    "ClientCreate",
    "ClientCreated",
    "ClientNotFound",
    "ClientPage",
    "ClientPatch",
    "ClientRead",
    "ClientStore",
    "OAuthClientRow",
    "PublicClientSecret",
    "hash_client_secret",
]

log = structlog.get_logger()

CONFIDENTIAL, PUBLIC = "confidential", "public"
# The clients page's cursor: the last row's created_at (µs since 1970) and its client id.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[A-Za-z0-9_-]{1,64}$(?!\n)"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_PATCHABLE = ("name", "redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes", "first_party", "is_active")
# What an unknown, inactive or public client's "secret" is compared with (no secret hashes to it).
_DUMMY_DIGEST = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)


def _plausible(client_id: str) -> bool:
    """An id we could have made; any other (a NUL, 10 KB) is unknown without asking PostgreSQL."""
    return bool(_CLIENT_ID.search(client_id))


class ClientNotFound(NotFound):
    """No client with that id."""


class PublicClientSecret(Conflict):
    """A public client has no secret to rotate."""


class OAuthClientRow(msgspec.Struct, frozen=True):
    """A registered client as the provider reads it: every column but the secret's hash."""

    client_id: str
    name: str
    client_type: str  # "confidential" | "public"
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    first_party: bool
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def is_public(self) -> bool:
        return self.client_type == PUBLIC

    def allows_redirect_uri(self, uri: str) -> bool:
        """Exactly one of the registered redirect URIs, character for character."""
        return uri in self.redirect_uris

    def allows_post_logout_redirect_uri(self, uri: str) -> bool:
        return uri in self.post_logout_redirect_uris

    def allows_grant(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def hash_client_secret(secret: str) -> str:
    """The stored form of a client secret (SHA-256, hex)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_client_id() -> str:
    while True:
        client_id = secrets.token_urlsafe(16)
        if not client_id.startswith("-"):  # never taken for an option on a command line
            return client_id


def _row(row: Any) -> OAuthClientRow:
    return OAuthClientRow(
        row.client_id,
        row.name,
        row.client_type,
        tuple(row.redirect_uris or ()),
        tuple(row.post_logout_redirect_uris or ()),
        tuple(row.grant_types or ()),
        tuple(row.scopes or ()),
        row.first_party,
        row.is_active,
        row.created_at,
        row.updated_at,
    )


def _read(row: Any) -> ClientRead:
    return ClientRead(
        client_id=row.client_id,
        name=row.name,
        type=row.client_type,
        redirect_uris=list(row.redirect_uris or []),
        post_logout_redirect_uris=list(row.post_logout_redirect_uris or []),
        grant_types=list(row.grant_types or []),
        scopes=list(row.scopes or []),
        first_party=row.first_party,
        is_active=row.is_active,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _created(row: Any, secret: str | None) -> ClientCreated:
    fields = msgspec.structs.asdict(_read(row))
    return ClientCreated(**fields, client_secret=msgspec.UNSET if secret is None else secret)


def _encode_cursor(at: dt.datetime, client_id: str) -> str:
    return f"{(at - _EPOCH) // dt.timedelta(microseconds=1)}.{client_id}"


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    micros, _, client_id = cursor.partition(".")
    if not (micros.isascii() and micros.isdigit() and len(micros) <= 17 and _plausible(client_id)):
        raise InvalidInput("cursor", "not a cursor this API returned")
    return _EPOCH + dt.timedelta(microseconds=int(micros)), client_id


def _spec_values(spec: ClientSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "redirect_uris": list(spec.redirect_uris),
        "post_logout_redirect_uris": list(spec.post_logout_redirect_uris),
        "grant_types": list(spec.grant_types),
        "scopes": list(spec.scopes),
    }


class ClientStore:
    """Registered OAuth clients. The admin's changes commit their own transaction; the
    provider's reads (`get`, `authenticate`) run in the caller's and leave it open.

    Args:
        session: the database session (the request's, or the CLI's).
        revocation: the revocation protocol, for the sessions a deletion or deactivation ends.
        redis: the client RevocationStore writes to (the users' cached revocation state).
    """

    def __init__(self, session: AsyncSession, revocation: RevocationStore, redis: Redis) -> None:
        self._session = session
        self._revocation = revocation
        self._redis = redis
        self._clients = ClientRepository(session=session)

    # ---- the provider's reads ----------------------------------------------------------------

    async def get(self, client_id: str, *, share_lock: bool = False) -> OAuthClientRow | None:
        """An active client, or None. With `share_lock`, its row stays share-locked to the end
        of the caller's transaction (a session opened through it: see the module docstring)."""
        if not _plausible(client_id):
            return None
        row = await self._clients.one(client_id, active_only=True, lock="share" if share_lock else None)
        return None if row is None else _row(row)

    async def authenticate(self, client_id: str, secret: str | None) -> OAuthClientRow | None:
        """The active confidential client whose secret this is, or None (unknown, inactive or
        public client, wrong or missing secret), in the same time whichever it is."""
        row = await self._clients.one(client_id, active_only=True, with_secret=True) if _plausible(client_id) else None
        stored = row.secret_hash if row is not None and row.client_type == CONFIDENTIAL and row.secret_hash else None
        presented = hash_client_secret(secret or "")
        matches = hmac.compare_digest(presented, stored or _DUMMY_DIGEST)
        return _row(row) if matches and stored is not None and row is not None else None

    # ---- the admin's reads -------------------------------------------------------------------

    async def read(self, client_id: str) -> ClientRead:
        """Any client, active or not.

        Raises:
            ClientNotFound.
        """
        row = await self._clients.one(client_id) if _plausible(client_id) else None
        await self._session.rollback()
        if row is None:
            raise ClientNotFound("no client with that id")
        return _read(row)

    async def list_clients(self, limit: int = 50, cursor: str | None = None) -> ClientPage:
        """Newest first, a keyset page at a time (`next_cursor` null on the last page).

        Raises:
            InvalidInput: a malformed cursor.
        """
        rows = await self._clients.page(limit, _decode_cursor(cursor) if cursor else None)
        await self._session.rollback()
        items = [_read(row) for row in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return ClientPage(items, None if last is None else _encode_cursor(last.created_at, last.client_id))

    # ---- the admin's changes -----------------------------------------------------------------

    async def create(self, data: ClientCreate, actor: Actor) -> ClientCreated:
        """Register a client; a confidential one's secret is in the answer, and only there.

        Raises:
            InvalidInput: a rule broken (the field named).
        """
        spec = check_client(
            name=data.name,
            client_type=data.type,
            redirect_uris=data.redirect_uris,
            post_logout_redirect_uris=data.post_logout_redirect_uris,
            grant_types=data.grant_types,
            scopes=data.scopes,
        )
        first_party = _flag("first_party", data.first_party)
        secret = secrets.token_urlsafe(32) if spec.client_type == CONFIDENTIAL else None
        client_id = _new_client_id()
        now = dt.datetime.now(dt.UTC)
        row = await self._clients.insert(
            {
                "client_id": client_id,
                "client_type": spec.client_type,
                "secret_hash": None if secret is None else hash_client_secret(secret),
                "first_party": first_party,
                "is_active": True,
                "created_at": now,
                "updated_at": now,
                **_spec_values(spec),
            }
        )
        details = {
            "name": spec.name,
            "type": spec.client_type,
            "grant_types": list(spec.grant_types),
            "scopes": list(spec.scopes),
            "redirect_uris": list(spec.redirect_uris),
            "post_logout_redirect_uris": list(spec.post_logout_redirect_uris),
            "first_party": first_party,
        }
        await record(self._session, actor, AuditEntry("client.create", client_id, details, target_type="client"))
        await self._session.commit()
        log.info("admin.client_created", client_id=client_id, client_type=spec.client_type, via=actor.via or "api")
        return _created(row, secret)

    async def update(self, client_id: str, patch: ClientPatch, actor: Actor) -> ClientRead:
        """Change the fields given; the result is checked as a whole, as a new client is. A
        deactivation ends every session opened through the client; an activation revives none.

        Raises:
            ClientNotFound, InvalidInput, ServiceUnavailable (Redis, when sessions had to end).
        """
        current = await self._lock(client_id)
        given = {name: getattr(patch, name) for name in _PATCHABLE if getattr(patch, name) is not msgspec.UNSET}
        merged = {name: given.get(name, getattr(current, name)) for name in _PATCHABLE}
        try:
            spec = check_client(
                name=merged["name"],
                client_type=current.client_type,
                redirect_uris=merged["redirect_uris"],
                post_logout_redirect_uris=merged["post_logout_redirect_uris"],
                grant_types=merged["grant_types"],
                scopes=merged["scopes"],
            )
            first_party = _flag("first_party", merged["first_party"])
            is_active = _flag("is_active", merged["is_active"])
        except InvalidInput:
            await self._session.rollback()
            raise
        values: dict[str, Any] = {**_spec_values(spec), "first_party": first_party, "is_active": is_active}
        changed = {name: value for name, value in values.items() if _stored(getattr(current, name)) != value}
        if not changed:
            await self._session.rollback()
            return _read(current)
        row = await self._clients.change(client_id, {**changed, "updated_at": dt.datetime.now(dt.UTC)})
        details: dict[str, Any] = {"fields": sorted(changed), **changed}
        owners: set[uuid.UUID] = set()
        if changed.get("is_active") is False:
            sessions, owners = await self._end_sessions(client_id)
            details["sessions"] = sessions
        await record(self._session, actor, AuditEntry("client.update", client_id, details, target_type="client"))
        await self._commit(owners)
        if details.get("sessions"):
            record_session_revoked("admin", details["sessions"])
        log.info("admin.client_updated", client_id=client_id, fields=sorted(changed), via=actor.via or "api")
        return _read(row)

    async def delete(self, client_id: str, actor: Actor) -> int:
        """Remove the client (its consents with it) and end every session opened through it;
        returns how many sessions were still live.

        Raises:
            ClientNotFound, ServiceUnavailable (Redis: nothing was changed).
        """
        current = await self._lock(client_id)
        sessions, owners = await self._end_sessions(client_id)
        await self._clients.remove(client_id)
        details = {"name": current.name, "sessions": sessions}
        await record(self._session, actor, AuditEntry("client.delete", client_id, details, target_type="client"))
        await self._commit(owners)
        if sessions:
            record_session_revoked("admin", sessions)
        log.info("admin.client_deleted", client_id=client_id, sessions=sessions, via=actor.via or "api")
        return sessions

    async def rotate_secret(self, client_id: str, actor: Actor) -> ClientCreated:
        """A new secret for a confidential client, in the answer once; the old one stops
        working at the commit. Sessions stay.

        Raises:
            ClientNotFound; PublicClientSecret (409) for a public client.
        """
        current = await self._lock(client_id)
        if current.client_type != CONFIDENTIAL:
            await self._session.rollback()
            raise PublicClientSecret("a public client has no secret")
        secret = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        row = await self._clients.change(client_id, {"secret_hash": hash_client_secret(secret), "updated_at": now})
        await record(self._session, actor, AuditEntry("client.secret_rotate", client_id, target_type="client"))
        await self._session.commit()
        log.info("admin.client_secret_rotated", client_id=client_id, via=actor.via or "api")
        return _created(row, secret)

    # ---- helpers -----------------------------------------------------------------------------

    async def _lock(self, client_id: str) -> Any:
        row = await self._clients.one(client_id, lock="update") if _plausible(client_id) else None
        if row is None:
            await self._session.rollback()
            raise ClientNotFound("no client with that id")
        return row

    async def _end_sessions(self, client_id: str) -> tuple[int, set[uuid.UUID]]:
        """Revoke every session opened through the client, under each owner's row lock (the
        protocol's steps 1 and 2); returns how many were live and whose they were. The caller
        holds the client's row lock, so no session of it opens meanwhile; an owner that still
        appears (a rotation committed between the two statements) is locked before Redis is told."""
        owners = set(await self._clients.lock_owners(client_id))
        revoked = await self._clients.revoke_sessions(client_id, dt.datetime.now(dt.UTC))
        late = {user for _, user in revoked} - owners
        await self._clients.lock_users(late)
        return len({family for family, _ in revoked}), owners | late

    async def _commit(self, owners: set[uuid.UUID]) -> None:
        """The protocol's steps 3 and 4 for every owner: drop each one's cached revocation
        state (one key per user, each in its own hash slot: one DEL each, pipelined), then commit.

        Raises:
            ServiceUnavailable: Redis did not take the deletes; everything was rolled back.
        """
        if owners:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for user_id in sorted(owners):
                        pipe.delete(self._revocation.key(str(user_id)))
                    await pipe.execute()
            except RedisError:
                await self._session.rollback()
                raise ServiceUnavailable from None
        await self._session.commit()


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "true or false", reason="invalid")
    return value


def _stored(value: Any) -> Any:
    """A column's value as the change compares it (arrays come back as lists)."""
    return list(value) if isinstance(value, list | tuple) else value
