"""The admin API on real PostgreSQL and Redis: every endpoint for admins, plain users (403) and
no token (401); the changes, their audit events and their effect on tokens; the last admin."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from auth_service.container import Resources
from auth_service.domain.admin.schemas import AdminUserPatch
from auth_service.domain.admin.service import AdminService, LastAdmin
from auth_service.lib.audit import Actor
from auth_service.settings import Settings
from tests.conftest import run_engine
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.conftest import login

NEW_PASSWORD = "an entirely new passphrase"


@pytest.fixture
async def root(settings: Settings) -> Any:
    return await create_user(settings, username="root", roles=["admin"])


@pytest.fixture
async def admin_headers(client: AsyncTestClient[Any], root: Any) -> dict[str, Any]:
    return bearer((await login(client, "root"))["access_token"])


async def _events(settings: Settings, action: str | None = None) -> list[Any]:
    async with run_engine(settings.database.url).connect() as conn:
        sql = "SELECT * FROM audit_events" + (" WHERE action = :a" if action else "") + " ORDER BY at, id"
        return list((await conn.execute(text(sql), {"a": action})).mappings())


def _endpoints(user_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/api/v1/admin/users", None),
        (
            "POST",
            "/api/v1/admin/users",
            {"username": "newbie", "email": "newbie@example.com", "password": NEW_PASSWORD},
        ),
        ("GET", f"/api/v1/admin/users/{user_id}", None),
        ("PATCH", f"/api/v1/admin/users/{user_id}", {"roles": ["user", "auditor"]}),
        ("POST", f"/api/v1/admin/users/{user_id}/logout", None),
        ("POST", f"/api/v1/admin/users/{user_id}/password-reset", None),
        ("DELETE", f"/api/v1/admin/users/{user_id}/mfa", None),
        ("GET", "/api/v1/admin/login-records", None),
        ("GET", "/api/v1/admin/audit-events", None),
        ("DELETE", f"/api/v1/admin/users/{user_id}", None),
    ]


async def test_every_endpoint_is_401_without_a_token_403_for_a_plain_user_and_works_for_an_admin(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    plain = bearer((await login(client))["access_token"])
    for method, path, body in _endpoints(str(alice.id)):
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
        refused = await client.request(method, path, json=body, headers=plain)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"]["code"] == "FORBIDDEN"
    # Nothing was done by those; each refusal of the plain user left its trace (ASVS V16.3).
    denials = await _events(settings)
    assert [e["action"] for e in denials] == ["admin.denied"] * len(_endpoints(str(alice.id)))
    assert {e["details"]["reason"] for e in denials} == {"forbidden"}
    assert {str(e["actor_id"]) for e in denials} == {str(alice.id)}
    assert [e["details"]["operation"] for e in denials] == [
        "users.list",
        "users.create",
        "users.get",
        "users.update",
        "users.logout",
        "users.password_reset",
        "users.mfa_reset",
        "login_records.list",
        "audit_events.list",
        "users.delete",
    ]
    assert all(e["request_id"] and e["actor_ip"] for e in denials)
    assert [e["target_id"] for e in denials if e["details"]["operation"] == "users.get"] == [str(alice.id)]
    expected = [200, 201, 200, 200, 204, 202, 204, 200, 200, 204]
    for (method, path, body), status in zip(_endpoints(str(alice.id)), expected, strict=True):
        done = await client.request(method, path, json=body, headers=admin_headers)
        assert done.status_code == status, (method, path, done.text)
    actions = [e["action"] for e in await _events(settings) if e["action"] != "admin.denied"]
    assert actions == [
        "user.create",
        "user.roles",
        "user.logout_all",
        "user.password_reset_sent",
        "user.mfa_reset",
        "user.delete",
    ]


async def test_the_user_shape_is_me_plus_is_active_and_updated_at(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any]
) -> None:
    created = await client.post(
        "/api/v1/admin/users",
        json={"username": "Bob", "email": "bob@example.com", "roles": ["user", "user"], "password": NEW_PASSWORD},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {
        "id",
        "username",
        "email",
        "email_verified",
        "roles",
        "created_at",
        "mfa",
        "is_active",
        "updated_at",
    }
    assert body["roles"] == ["user"] and body["email_verified"] is True and body["is_active"] is True
    fetched = await client.get(f"/api/v1/admin/users/{body['id']}", headers=admin_headers)
    assert fetched.json() == body
    # The new user can log in with the password the admin gave.
    assert (await login(client, "bob", NEW_PASSWORD))["access_token"]


async def test_role_change_and_deactivation_kill_the_users_tokens_at_once(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    tokens = await login(client)
    assert (await client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))).status_code == 200
    changed = await client.patch(
        f"/api/v1/admin/users/{alice.id}", json={"roles": ["user", "editor"]}, headers=admin_headers
    )
    assert changed.status_code == 200 and changed.json()["roles"] == ["editor", "user"]
    dead = await client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))
    assert dead.status_code == 401 and dead.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401
    # A fresh login carries the new roles.
    fresh = await login(client)
    verified = await client.get("/api/v1/auth/verify", headers=bearer(fresh["access_token"]))
    assert verified.json()["roles"] == ["editor", "user"]
    off = await client.patch(f"/api/v1/admin/users/{alice.id}", json={"is_active": False}, headers=admin_headers)
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert (await client.get("/api/v1/auth/verify", headers=bearer(fresh["access_token"]))).status_code == 401
    failed = await client.post("/api/v1/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    assert failed.status_code == 401
    back = await client.patch(f"/api/v1/admin/users/{alice.id}", json={"is_active": True}, headers=admin_headers)
    assert back.json()["is_active"] is True
    assert (await client.get("/api/v1/auth/verify", headers=bearer(fresh["access_token"]))).status_code == 401
    events = await _events(settings)
    assert [e["action"] for e in events] == ["user.roles", "user.deactivate", "user.activate"]
    roles = events[0]
    assert roles["details"] == {"added": ["editor"], "removed": []}
    assert roles["actor_id"] == root.id and roles["target_type"] == "user" and roles["target_id"] == str(alice.id)
    assert roles["actor_ip"] and roles["request_id"]


async def test_one_patch_of_several_fields_writes_an_event_for_each_in_one_statement(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    response = await client.patch(
        f"/api/v1/admin/users/{alice.id}",
        json={"email": "alice@new.example.com", "roles": [], "is_active": False},
        headers={**admin_headers, "X-Request-ID": "patch-all-three"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "alice@new.example.com" and response.json()["roles"] == []
    events = await _events(settings)
    assert sorted(e["action"] for e in events) == ["user.deactivate", "user.roles", "user.update"]
    assert {e["request_id"] for e in events} == {"patch-all-three"}
    assert len({e["at"] for e in events}) == 1  # one transaction
    # The same values again change nothing and write nothing.
    again = await client.patch(
        f"/api/v1/admin/users/{alice.id}",
        json={"email": "alice@new.example.com", "roles": [], "is_active": False},
        headers=admin_headers,
    )
    assert again.status_code == 200 and len(await _events(settings)) == 3


async def test_the_last_active_admin_cannot_be_removed_in_any_way(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    for method, body in (("PATCH", {"is_active": False}), ("PATCH", {"roles": ["user"]}), ("DELETE", None)):
        refused = await client.request(method, f"/api/v1/admin/users/{root.id}", json=body, headers=admin_headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "CONFLICT"
    # Nothing changed; each refusal left its trace, in a transaction of its own.
    refusals = await _events(settings)
    assert [(e["action"], e["details"]["reason"], e["target_id"]) for e in refusals] == [
        ("admin.denied", "last_admin", str(root.id))
    ] * 3
    assert [e["details"]["operation"] for e in refusals] == ["user.deactivate", "user.roles", "user.delete"]
    assert {str(e["actor_id"]) for e in refusals} == {str(root.id)}
    # With a second admin, the first can step down.
    second = await create_user(settings, username="second", roles=["admin"])
    assert (
        await client.patch(f"/api/v1/admin/users/{root.id}", json={"roles": ["user"]}, headers=admin_headers)
    ).status_code == 200
    headers = bearer((await login(client, second.username))["access_token"])
    assert (await client.delete(f"/api/v1/admin/users/{second.id}", headers=headers)).status_code == 409


async def test_an_admin_who_cannot_sign_in_does_not_count_as_the_other_admin(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    """An invited admin who never set a password, or one whose address is unverified while
    REGISTRATION_REQUIRE_VERIFIED_EMAIL is on, cannot sign in: the only admin who can may not
    step down (the issue's item 16)."""
    invited = await client.post(
        "/api/v1/admin/users",
        json={"username": "invitee", "email": "invitee@example.com", "roles": ["admin"]},
        headers=admin_headers,
    )
    assert invited.status_code == 201, invited.text
    unverified = await create_user(settings, username="unverified", roles=["admin"])
    async with run_engine(settings.database.url).begin() as conn:
        await conn.execute(text("UPDATE users SET email_verified = false WHERE id = :u"), {"u": unverified.id})
    for method, body in (("PATCH", {"is_active": False}), ("PATCH", {"roles": ["user"]}), ("DELETE", None)):
        refused = await client.request(method, f"/api/v1/admin/users/{root.id}", json=body, headers=admin_headers)
        assert refused.status_code == 409, (method, body, refused.text)
    # Neither can really sign in: the invited one has no password, the other is unverified.
    for name in ("invitee", "unverified"):
        attempt = await client.post("/api/v1/auth/login", json={"username": name, "password": DEFAULT_PASSWORD})
        assert attempt.status_code in (401, 403), attempt.text
    # Once the invitation is used, the invited admin counts and root may step down.
    async with run_engine(settings.database.url).connect() as conn:
        token_id = (
            await conn.execute(
                text("SELECT payload->>'token_id' FROM notifications WHERE user_id = :u"), {"u": invited.json()["id"]}
            )
        ).scalar_one()
    token = client.app.state.resources.account_links.token(uuid.UUID(token_id), "reset")
    confirmed = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 204, confirmed.text
    stepped_down = await client.patch(f"/api/v1/admin/users/{root.id}", json={"roles": []}, headers=admin_headers)
    assert stepped_down.status_code == 200, stepped_down.text


async def test_an_invited_users_login_fails_like_a_wrong_password_against_the_dummy_hash(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    created = await client.post(
        "/api/v1/admin/users", json={"username": "dora", "email": "dora@example.com"}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    async with run_engine(settings.database.url).connect() as conn:
        stored = (
            await conn.execute(text("SELECT password_hash FROM users WHERE id = :u"), {"u": created.json()["id"]})
        ).scalar_one()
    assert stored.startswith("!") and "$argon2" not in stored  # unusable, and recognisably so
    attempt = await client.post("/api/v1/auth/login", json={"username": "dora", "password": stored})
    assert attempt.status_code == 401 and attempt.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    async with run_engine(settings.database.url).connect() as conn:
        reason = (
            await conn.execute(text("SELECT failure_reason FROM login_records WHERE username = 'dora'"))
        ).scalar_one()
    assert reason == "bad_password"


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Any]:
    engine = create_async_engine(settings.database.url, hide_parameters=True)
    built = Resources(settings, async_sessionmaker(engine, expire_on_commit=False))
    yield built
    await built.close()
    await engine.dispose()


@pytest.mark.parametrize("second_removal", ["delete", "deactivate", "drop_role"])
async def test_two_concurrent_removals_of_two_admins_leave_one(
    resources: Any, settings: Settings, second_removal: str
) -> None:
    """Both removals are inside their transactions at once (the test holds the admins' advisory
    lock until both wait on it), then one commits and the other is refused."""
    first = await create_user(settings, username="first", roles=["admin"])
    second = await create_user(settings, username="second", roles=["admin"])

    async def remove(user_id: uuid.UUID, how: str) -> str:
        async with resources.session_factory() as session:
            admin = AdminService(session, resources.hasher, resources.revocation, resources.password_policy)
            try:
                if how == "delete":
                    await admin.delete(user_id, Actor(first.id))
                elif how == "deactivate":
                    await admin.update(user_id, AdminUserPatch(is_active=False), Actor(first.id))
                else:
                    await admin.update(user_id, AdminUserPatch(roles=["user"]), Actor(first.id))
            except LastAdmin:
                return "refused"
            return "done"

    engine = run_engine(settings.database.url)
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(x'61646d696e73'::bigint)"))
        removals = [
            asyncio.ensure_future(remove(first.id, "deactivate")),
            asyncio.ensure_future(remove(second.id, second_removal)),
        ]
        waiting = 0
        for _ in range(250):
            waiting = (
                await holder.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
            ).scalar_one()
            if waiting == 2:
                break
            await asyncio.sleep(0.02)
        assert waiting == 2, "both removals must be waiting inside their transactions"
        await holder.execute(text("SELECT pg_advisory_unlock(x'61646d696e73'::bigint)"))
        results = await asyncio.gather(*removals)
    assert sorted(results) == ["done", "refused"]
    async with engine.connect() as conn:
        admins = (
            await conn.execute(text("SELECT count(*) FROM users WHERE is_active AND 'admin' = ANY(roles)"))
        ).scalar_one()
    assert admins == 1
    # The refused one changed nothing; its refusal is recorded.
    events = await _events(settings)
    assert len([e for e in events if e["action"] != "admin.denied"]) == 1
    assert [e["details"]["reason"] for e in events if e["action"] == "admin.denied"] == ["last_admin"]


async def test_create_without_a_password_invites_and_the_invitation_sets_it(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    created = await client.post(
        "/api/v1/admin/users", json={"username": "carol", "email": "carol@example.com"}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["email_verified"] is False
    async with run_engine(settings.database.url).connect() as conn:
        note = (
            await conn.execute(
                text("SELECT kind, payload FROM notifications WHERE user_id = :u"), {"u": created.json()["id"]}
            )
        ).one()
    assert note.kind == "invitation" and note.payload["token_id"]
    links = client.app.state.resources.account_links
    token = links.token(uuid.UUID(note.payload["token_id"]), "reset")
    confirmed = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 204, confirmed.text
    tokens = await login(client, "carol", NEW_PASSWORD)
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["email_verified"] is True
    event = (await _events(settings, "user.create"))[0]
    assert event["details"] == {"username": "carol", "roles": [], "invited": True}


async def test_delete_keeps_login_records_with_the_typed_username(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    tokens = await login(client)
    assert (await client.delete(f"/api/v1/admin/users/{alice.id}", headers=admin_headers)).status_code == 204
    assert (await client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))).status_code == 401
    assert (await client.get(f"/api/v1/admin/users/{alice.id}", headers=admin_headers)).status_code == 404
    records = await client.get("/api/v1/admin/login-records?username=alice", headers=admin_headers)
    assert [(r["user_id"], r["username"]) for r in records.json()["items"]] == [(None, "alice")]
    assert (await _events(settings, "user.delete"))[0]["details"] == {"username": "alice"}


async def test_login_records_filters(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    await login(client)
    bad = await client.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong password!"})
    assert bad.status_code == 401
    url = "/api/v1/admin/login-records"
    everything = (await client.get(url, headers=admin_headers)).json()["items"]
    assert len(everything) == 3  # root's login, alice's two
    assert set(everything[0]) == {
        "id",
        "at",
        "user_id",
        "username",
        "ip_address",
        "user_agent",
        "success",
        "failure_reason",
    }
    mine = (await client.get(f"{url}?user_id={alice.id}", headers=admin_headers)).json()["items"]
    assert [r["success"] for r in mine] == [False, True]  # newest first
    failures = (await client.get(f"{url}?success=false", headers=admin_headers)).json()["items"]
    assert [r["failure_reason"] for r in failures] == ["bad_password"]
    async with run_engine(settings.database.url).begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO login_records (id, user_id, username, ip_address, success, failure_reason) "
                "VALUES (:id, NULL, 'ghost', '2001:db8::7', false, 'unknown_user')"
            ),
            {"id": uuid.uuid4()},
        )
    by_ip = (await client.get(f"{url}?ip=2001:0db8:0:0::7", headers=admin_headers)).json()["items"]
    assert [(r["username"], r["user_id"]) for r in by_ip] == [("ghost", None)]  # the IP in any spelling
    assert (await client.get(f"{url}?ip=192.0.2.99", headers=admin_headers)).json()["items"] == []
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert (await client.get(f"{url}?since={future}", headers=admin_headers)).json()["items"] == []
    assert len((await client.get(f"{url}?until={future}", headers=admin_headers)).json()["items"]) == 4


async def test_users_listing_filters(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    await create_user(settings, username="Zed_one", roles=["ops"])
    await create_user(settings, username="zed%two", is_active=False)
    url = "/api/v1/admin/users"

    async def names(query: str) -> list[str]:
        response = await client.get(f"{url}?{query}", headers=admin_headers)
        assert response.status_code == 200, response.text
        return [u["username"] for u in response.json()["items"]]

    assert await names("q=ZED") == ["zed%two", "Zed_one"]
    assert await names("q=zed_") == ["Zed_one"]  # _ is a character, not a wildcard
    assert await names("q=zed%25") == ["zed%two"]
    assert await names("q=root@EXAMPLE") == ["root"]
    assert await names("role=ops") == ["Zed_one"]
    assert await names("active=false") == ["zed%two"]
    assert await names("role=admin&active=true") == ["root"]


async def test_bad_input_is_a_clear_error(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any]
) -> None:
    for path in (
        f"/api/v1/admin/users/{uuid.uuid4()}",
        "/api/v1/admin/users/not-a-uuid",
        f"/api/v1/admin/users/{uuid.uuid4()}/logout",
    ):
        method = "POST" if path.endswith("logout") else "GET"
        missing = await client.request(method, path, headers=admin_headers)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND", path
    for query in (
        "/api/v1/admin/users?cursor=nonsense",
        "/api/v1/admin/login-records?cursor=12.zz",
        "/api/v1/admin/audit-events?cursor=" + "9" * 40,
        "/api/v1/admin/users?role=Not A Role",
        "/api/v1/admin/users?limit=0",
        "/api/v1/admin/users?limit=101",
        "/api/v1/admin/login-records?user_id=nope",
        "/api/v1/admin/login-records?ip=999.1.1.1",
        "/api/v1/admin/login-records?since=yesterday",
        "/api/v1/admin/audit-events?actor_id=nope",
        "/api/v1/admin/audit-events?action=DROP TABLE",
        "/api/v1/admin/users?q=" + "x" * 10_000,
        "/api/v1/admin/login-records?username=" + "x" * 10_000,
        "/api/v1/admin/users?q=a%00b",
        "/api/v1/admin/login-records?username=%00",
        "/api/v1/admin/audit-events?target_id=x%00",
        "/api/v1/admin/login-records?ip=1:2:3",
    ):
        refused = await client.get(query, headers=admin_headers)
        assert refused.status_code == 400, (query[:80], refused.status_code, refused.text[:200])
        assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
    for edge in ("since=0001-01-01T00:00:00%2B01:00", "until=9999-12-31T23:00:00-05:00"):  # the first/last instant
        assert (await client.get(f"/api/v1/admin/login-records?{edge}", headers=admin_headers)).status_code == 200
    for body in (
        {"username": "x", "email": "x@example.com"},
        {"username": "okname", "email": "not-an-address"},
        {"username": "okname", "email": "ok@example.com", "roles": ["Admin!"]},
        {"username": "okname", "email": "ok@example.com", "password": "short"},
        {"username": "okname", "email": "ok@example.com", "unknown": 1},
    ):
        refused = await client.post("/api/v1/admin/users", json=body, headers=admin_headers)
        assert refused.status_code == 400, (body, refused.text)
    for body in ({"username": "ALICE", "email": "new@example.com"}, {"username": "new", "email": "Alice@example.com"}):
        taken = await client.post("/api/v1/admin/users", json={**body, "password": NEW_PASSWORD}, headers=admin_headers)
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "CONFLICT"
    taken = await client.patch(
        f"/api/v1/admin/users/{alice.id}", json={"email": "root@example.com"}, headers=admin_headers
    )
    assert taken.status_code == 409
    for body in ({"roles": "admin"}, {"is_active": "yes"}, {"email": None}, {"username": "renamed"}):
        refused = await client.patch(f"/api/v1/admin/users/{alice.id}", json=body, headers=admin_headers)
        assert refused.status_code == 400, (body, refused.text)


@pytest.mark.parametrize(
    "address",
    [
        "victim@example.com\uff0cattacker\uff20evil.example",  # NFKC: two mailboxes
        "a@" + "\ufdfa" * 20 + ".example",  # NFKC: 18 characters each, past the column
    ],
)
async def test_an_admin_given_address_is_checked_as_it_will_be_stored(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any], settings: Settings, address: str
) -> None:
    created = await client.post(
        "/api/v1/admin/users",
        json={"username": "newbie", "email": address, "password": NEW_PASSWORD},
        headers=admin_headers,
    )
    assert created.status_code == 400 and created.json()["error"]["code"] == "VALIDATION_ERROR", created.text
    changed = await client.patch(f"/api/v1/admin/users/{alice.id}", json={"email": address}, headers=admin_headers)
    assert changed.status_code == 400 and changed.json()["error"]["code"] == "VALIDATION_ERROR", changed.text
    async with run_engine(settings.database.url).connect() as conn:
        rows = (await conn.execute(text("SELECT username, email FROM users ORDER BY username"))).all()
    assert [tuple(row) for row in rows] == [("alice", "alice@example.com"), ("root", "root@example.com")]


async def test_the_audit_log_refuses_update_and_delete(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    await login(client)
    assert (await client.post(f"/api/v1/admin/users/{alice.id}/logout", headers=admin_headers)).status_code == 204
    engine = run_engine(settings.database.migration_url)  # the trigger binds the tables' owner too
    for statement in (
        "UPDATE audit_events SET action = 'user.create'",
        "UPDATE audit_events SET details = '{}'::jsonb WHERE true",
        "DELETE FROM audit_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    [event] = await _events(settings)
    assert event["action"] == "user.logout_all" and event["details"] == {"sessions": 1}


async def test_the_service_role_owns_nothing_and_cannot_rewrite_or_erase_the_audit_log(
    client: AsyncTestClient[Any], root: Any, alice: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    """The API connects as DATABASE_SERVICE_USER: it reads and appends the audit log, and every way
    of erasing it (UPDATE, DELETE, TRUNCATE, disabling the trigger, dropping it) is refused."""
    assert (await client.post(f"/api/v1/admin/users/{alice.id}/logout", headers=admin_headers)).status_code == 204
    assert settings.database.url == settings.database.url  # the app's engine
    engine = run_engine(settings.database.url)
    async with engine.connect() as conn:
        who = (await conn.execute(text("SELECT current_user"))).scalar_one()
        owned = (
            await conn.execute(text("SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole"))
        ).scalar_one()
    assert who == settings.database.service_user == "auth_service_app"
    assert owned == 0
    for statement in (
        "UPDATE audit_events SET details = '{}'::jsonb",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_events_append_only ON audit_events",
        "DROP TABLE audit_events",
        "SET ROLE postgres",
    ):
        with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    async with engine.begin() as conn:  # what the service needs still works: read and append
        assert (await conn.execute(text("SELECT count(*) FROM audit_events"))).scalar_one() == 1
    assert [e["action"] for e in await _events(settings)] == ["user.logout_all"]  # the one row, intact


async def _insert_records(settings: Settings, count: int, start: dt.datetime, step: dt.timedelta) -> None:
    async with run_engine(settings.database.url).begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO login_records (id, username, ip_address, success, login_timestamp) "
                "SELECT gen_random_uuid(), 'walker', '198.51.100.1', true, CAST(:start AS timestamptz) + n * CAST(:step AS interval) "
                "FROM generate_series(0, CAST(:count AS int) - 1) AS n"
            ),
            {"start": start, "step": step, "count": count},
        )


async def test_a_walk_of_1050_records_sees_each_once_while_new_rows_arrive(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    base = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    # 1,050 records, with runs of equal timestamps so the walk must order by id within one instant.
    await _insert_records(settings, 1050, base, dt.timedelta(milliseconds=0))
    async with run_engine(settings.database.url).begin() as conn:
        await conn.execute(
            text("UPDATE login_records SET login_timestamp = login_timestamp + (random() * 5)::int * interval '1 s'")
        )
        before = {
            str(r)
            for r in (await conn.execute(text("SELECT id FROM login_records WHERE username = 'walker'"))).scalars()
        }
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "username=walker&limit=50" + (f"&cursor={cursor}" if cursor else "")
        page = await client.get(f"/api/v1/admin/login-records?{query}", headers=admin_headers)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [r["id"] for r in body["items"]]
        pages += 1
        # New attempts arrive during the walk (newer than every row already walked).
        await _insert_records(settings, 7, dt.datetime.now(dt.UTC), dt.timedelta(microseconds=1))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 21
    assert len(seen) == len(set(seen)) == 1050
    assert set(seen) == before
    first = (await client.get("/api/v1/admin/login-records?username=walker&limit=100", headers=admin_headers)).json()
    ats = [r["at"] for r in first["items"]]
    assert ats == sorted(ats, reverse=True)


async def test_the_audit_events_and_users_listings_walk_by_cursor_too(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    created = []
    for i in range(7):
        response = await client.post(
            "/api/v1/admin/users",
            json={"username": f"walk{i}", "email": f"walk{i}@example.com", "password": NEW_PASSWORD},
            headers=admin_headers,
        )
        created.append(response.json()["id"])
    for listing, expected in (("users", set(created) | {str(root.id)}), ("audit-events", None)):
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = (
                await client.get(
                    f"/api/v1/admin/{listing}?limit=3" + (f"&cursor={cursor}" if cursor else ""), headers=admin_headers
                )
            ).json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if expected is not None:
            assert {u["id"] for u in seen} == expected and len(seen) == 8
        else:
            assert [e["target_id"] for e in seen] == list(reversed(created))
            assert all(e["actor_id"] == str(root.id) and e["action"] == "user.create" for e in seen)
    by_action = await client.get("/api/v1/admin/audit-events?action=user.create&limit=2", headers=admin_headers)
    assert len(by_action.json()["items"]) == 2 and by_action.json()["next_cursor"]
    by_target = await client.get(f"/api/v1/admin/audit-events?target_id={created[0]}", headers=admin_headers)
    assert [e["target_id"] for e in by_target.json()["items"]] == [created[0]]
    by_actor = await client.get(f"/api/v1/admin/audit-events?actor_id={uuid.uuid4()}", headers=admin_headers)
    assert by_actor.json() == {"items": [], "next_cursor": None}


async def test_an_admins_address_change_ends_the_old_addresses_links_and_tells_it(
    client: AsyncTestClient[Any], root: Any, admin_headers: dict[str, Any], settings: Settings
) -> None:
    created = await client.post(
        "/api/v1/admin/users", json={"username": "typo", "email": "typo@exmaple.com"}, headers=admin_headers
    )
    user_id = created.json()["id"]
    async with run_engine(settings.database.url).connect() as conn:
        token_id = (
            await conn.execute(
                text("SELECT payload->>'token_id' FROM notifications WHERE user_id = :u"), {"u": user_id}
            )
        ).scalar_one()
    moved = await client.patch(
        f"/api/v1/admin/users/{user_id}", json={"email": "typo@example.com"}, headers=admin_headers
    )
    assert moved.status_code == 200 and moved.json()["email_verified"] is False  # still not proven
    token = client.app.state.resources.account_links.token(uuid.UUID(token_id), "reset")
    stale = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "LINK_INVALID"
    async with run_engine(settings.database.url).connect() as conn:
        notice = (
            await conn.execute(
                text("SELECT payload FROM notifications WHERE user_id = :u AND kind = 'email_changed'"), {"u": user_id}
            )
        ).scalar_one()
    assert notice["details"]["to"] == "typo@exmaple.com"
    # Another spelling of the same address is no move: the links live on, nobody is told.
    respelled = await client.patch(
        f"/api/v1/admin/users/{user_id}", json={"email": "Typo@Example.com"}, headers=admin_headers
    )
    assert respelled.status_code == 200 and respelled.json()["email"] == "Typo@Example.com"
    async with run_engine(settings.database.url).connect() as conn:
        notices = (
            await conn.execute(
                text("SELECT count(*) FROM notifications WHERE user_id = :u AND kind = 'email_changed'"), {"u": user_id}
            )
        ).scalar_one()
    assert notices == 1
    # A verified account's new address stays verified (the admin vouches for it).
    alice = await create_user(settings, username="verified")
    moved = await client.patch(
        f"/api/v1/admin/users/{alice.id}", json={"email": "verified@new.example.com"}, headers=admin_headers
    )
    assert moved.json()["email_verified"] is True


@pytest.mark.parametrize(
    ("where", "index"),
    [
        ({}, "ix_login_records_at_id"),
        ({"user_id": True}, "ix_login_records_user_id_at_id"),
        ({"ip": True}, "ix_login_records_ip_address_at_id"),
        ({"username": True}, "ix_login_records_username_at_id"),
        ({"success": False}, "ix_login_records_failures_at_id"),
    ],
)
async def test_a_page_after_a_cursor_starts_its_index_scan_at_the_cursor(
    settings: Settings, root: Any, where: dict[str, Any], index: str
) -> None:
    """Keyset, not OFFSET: the cursor is an index condition of the filter's index (timings stay
    in bench/; this reads the plan of the statement the listing really sends)."""
    from sqlalchemy import event

    from auth_service.domain.admin.reads import AdminReads, LoginRecordFilter
    from auth_service.lib.pagination import encode_cursor

    async with run_engine(settings.database.url).begin() as conn:  # 2,000 records over 100 names and IPs
        await conn.execute(
            text(
                "INSERT INTO login_records (id, user_id, username, ip_address, success, login_timestamp) "
                "SELECT gen_random_uuid(), CASE WHEN n % 100 = 0 THEN CAST(:root AS uuid) END, 'u' || (n % 100), "
                "'10.0.0.' || (n % 100), n % 50 <> 0, now() - n * interval '1 second' FROM generate_series(1, 2000) AS n"
            ),
            {"root": str(root.id)},
        )
    where = {key: {"ip": "10.0.0.7", "username": "u7"}.get(key, value) for key, value in where.items()}
    if where.get("user_id"):
        where = {"user_id": root.id}
    engine = create_async_engine(settings.database.url)
    sent: list[tuple[str, Any]] = []
    event.listen(
        engine.sync_engine, "before_cursor_execute", lambda _c, _cur, sql, params, *_: sent.append((sql, params))
    )
    try:
        async with async_sessionmaker(engine)() as session:
            cursor = encode_cursor(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30), uuid.uuid4())
            await AdminReads(session).login_records(LoginRecordFilter(**where), 50, cursor)
        sql, params = sent[-1]
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            await driver.execute("ANALYZE login_records")
            # A table this small could be read whole: ask for the plan a big one gets.
            await driver.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
            plan = "\n".join(r[0] for r in await driver.fetch("EXPLAIN " + sql, *params))
    finally:
        await engine.dispose()
    assert f"Index Scan Backward using {index}" in plan, plan
    assert "Index Cond: (" in plan and "ROW(login_timestamp, id) < ROW(" in plan, plan
    assert "Sort" not in plan, plan
