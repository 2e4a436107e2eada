"""The OAuth client registry on real PostgreSQL and Redis: the admin API (401/403, the shapes, the
secret shown once, every validation rule, PATCH, secret rotation, the sessions a deactivation or
deletion ends), the store's `authenticate` and `get` for the provider, and `just create-client`."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from auth_service.container import Resources
from auth_service.domain.oauth.clients import ClientStore, OAuthClientRow
from auth_service.lib.crypto.tokens import hash_refresh_token
from auth_service.settings import Settings
from tests.conftest import run_engine
from tests.factories import bearer, create_user
from tests.integration.conftest import login

CLIENTS = "/api/v1/admin/clients"
WEB = {"name": "Example web app", "redirect_uris": ["https://app.example.com/callback"]}
READ_KEYS = {
    "client_id",
    "name",
    "type",
    "redirect_uris",
    "post_logout_redirect_uris",
    "grant_types",
    "scopes",
    "first_party",
    "is_active",
    "created_at",
    "updated_at",
}


@pytest.fixture
async def root(settings: Settings) -> Any:
    return await create_user(settings, username="root", roles=["admin"])


@pytest.fixture
async def admin(client: AsyncTestClient[Any], root: Any) -> dict[str, Any]:
    return bearer((await login(client, "root"))["access_token"])


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ClientStore]:
    """The store as the provider will hold it, on a session of its own."""
    resources = Resources(settings, pool_size=1)
    try:
        async with resources.session_factory() as session:
            yield ClientStore(session, resources.revocation, resources.redis)
    finally:
        await resources.close()


async def _sql(settings: Settings, sql: str, **params: Any) -> list[Any]:
    async with run_engine(settings.database.url).begin() as conn:
        result = await conn.execute(text(sql), params)
        return list(result.mappings()) if result.returns_rows else []


async def _create(client: AsyncTestClient[Any], headers: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = await client.post(CLIENTS, json={**WEB, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_every_endpoint_is_401_without_a_token_and_403_for_a_plain_user(
    client: AsyncTestClient[Any], alice: Any, admin: dict[str, Any], settings: Settings
) -> None:
    known = (await _create(client, admin))["client_id"]
    plain = bearer((await login(client))["access_token"])
    endpoints = [
        ("GET", CLIENTS, None, "clients.list"),
        ("POST", CLIENTS, WEB, "clients.create"),
        ("GET", f"{CLIENTS}/{known}", None, "clients.get"),
        ("PATCH", f"{CLIENTS}/{known}", {"name": "Renamed"}, "clients.update"),
        ("POST", f"{CLIENTS}/{known}/secret", None, "clients.secret_rotate"),
        ("DELETE", f"{CLIENTS}/{known}", None, "clients.delete"),
    ]
    for method, path, body, _ in endpoints:
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
        refused = await client.request(method, path, json=body, headers=plain)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"]["code"] == "FORBIDDEN"
    denials = await _sql(settings, "SELECT * FROM audit_events WHERE action = 'admin.denied' ORDER BY at, id")
    assert [e["details"]["operation"] for e in denials] == [op for *_, op in endpoints]
    # Nothing was done: the client is as it was.
    assert (await client.get(f"{CLIENTS}/{known}", headers=admin)).json()["name"] == WEB["name"]


async def test_a_confidential_client_sees_its_secret_once_and_authenticates_with_it(
    client: AsyncTestClient[Any], admin: dict[str, Any], root: Any, store: ClientStore, settings: Settings
) -> None:
    created = await _create(client, admin, post_logout_redirect_uris=["https://app.example.com/bye"])
    assert set(created) == READ_KEYS | {"client_secret"}
    assert created["type"] == "confidential" and created["is_active"] is True and created["first_party"] is False
    assert created["grant_types"] == ["authorization_code", "refresh_token"]
    assert created["scopes"] == ["openid", "profile", "email", "offline_access"]
    assert len(created["client_secret"]) >= 43 and len(created["client_id"]) >= 22
    client_id, secret = created["client_id"], created["client_secret"]

    fetched = await client.get(f"{CLIENTS}/{client_id}", headers=admin)
    assert fetched.status_code == 200 and set(fetched.json()) == READ_KEYS
    assert fetched.json() == {k: v for k, v in created.items() if k != "client_secret"}
    listed = (await client.get(CLIENTS, headers=admin)).json()
    assert listed == {"items": [fetched.json()], "next_cursor": None}
    assert secret not in fetched.text + json.dumps(listed)
    [stored] = await _sql(settings, "SELECT secret_hash FROM oauth_clients")
    assert stored["secret_hash"] != secret and len(stored["secret_hash"]) == 64

    row = await store.authenticate(client_id, secret)
    assert isinstance(row, OAuthClientRow) and row.client_id == client_id and not row.is_public
    assert row.redirect_uris == ("https://app.example.com/callback",)
    assert row.allows_redirect_uri("https://app.example.com/callback")
    assert not row.allows_redirect_uri("https://app.example.com/callback/")  # exact, character for character
    assert row.allows_post_logout_redirect_uri("https://app.example.com/bye") and row.allows_grant("refresh_token")
    assert await store.authenticate(client_id, secret + "x") is None
    assert await store.authenticate(client_id, None) is None
    assert await store.authenticate("no-such-client", secret) is None
    assert await store.get(client_id) == row and await store.get("no-such-client") is None

    public = await _create(client, admin, name="CLI tool", type="public", redirect_uris=["http://127.0.0.1/cb"])
    assert set(public) == READ_KEYS and public["type"] == "public"  # no secret at all
    assert await store.authenticate(public["client_id"], "") is None  # a public client cannot authenticate
    assert (await store.get(public["client_id"], share_lock=True)).is_public  # type: ignore[union-attr]

    [event, _] = await _sql(settings, "SELECT * FROM audit_events WHERE action = 'client.create' ORDER BY at")
    assert event["target_type"] == "client" and event["target_id"] == client_id and event["actor_id"] == root.id
    assert event["details"]["redirect_uris"] == ["https://app.example.com/callback"]
    assert event["details"]["type"] == "confidential" and event["request_id"] and event["actor_ip"]
    assert secret not in json.dumps(event["details"])


BAD = [
    ({"name": ""}, "name", None),
    ({"name": "tab\there"}, "name", None),
    ({"name": "evil\u202eppa"}, "name", None),  # a bidi override would show another name on the consent page
    ({"name": "x" * 129}, "name", None),
    ({"type": "service"}, "type", None),
    ({"grant_types": ["password"]}, "grant_types[0]", None),
    ({"grant_types": []}, "grant_types", None),
    ({"type": "public", "grant_types": ["client_credentials"]}, "grant_types", "public_client"),
    ({"grant_types": ["refresh_token"]}, "grant_types", "needs_authorization_code"),
    ({"redirect_uris": []}, "redirect_uris", "required"),
    ({"redirect_uris": ["http://app.example.com/cb"]}, "redirect_uris[0]", "insecure"),
    ({"redirect_uris": ["https://app.example.com/cb#frag"]}, "redirect_uris[0]", None),
    (
        {"redirect_uris": ["https://ok.example.com/cb", "https://user:pw@app.example.com/cb"]},
        "redirect_uris[1]",
        "userinfo",
    ),
    ({"redirect_uris": ["/relative/cb"]}, "redirect_uris[0]", None),
    ({"redirect_uris": ["https:///no-host"]}, "redirect_uris[0]", "no_host"),
    ({"redirect_uris": ["javascript:alert(1)"]}, "redirect_uris[0]", "scheme"),
    ({"redirect_uris": ["com.example.app:/cb"]}, "redirect_uris[0]", "scheme"),  # private-use: public clients only
    ({"redirect_uris": ["https://app.example.com/" + "a" * 2000]}, "redirect_uris[0]", None),
    ({"redirect_uris": [f"https://app.example.com/{i}" for i in range(21)]}, "redirect_uris", None),
    ({"post_logout_redirect_uris": ["http://app.example.com/bye"]}, "post_logout_redirect_uris[0]", "insecure"),
    ({"scopes": ["openid", "Not A Scope"]}, "scopes[1]", None),
    ({"scopes": [f"s{i}" for i in range(33)]}, "scopes", None),
    ({"first_party": "yes"}, "first_party", None),
    ({"client_secret": "mine"}, "body", None),  # unknown fields are refused (the message names it)
]
GOOD = [
    {"type": "public", "redirect_uris": ["com.example.app:/oauth2redirect", "http://[::1]:8765/cb"]},
    {"redirect_uris": ["http://localhost:3000/cb", "http://127.0.0.1/cb?x=1"], "first_party": True},
    {"redirect_uris": [], "grant_types": ["client_credentials"], "scopes": ["ssf.manage"]},
]


async def test_each_rule_refuses_with_one_validation_error_naming_the_field(
    client: AsyncTestClient[Any], admin: dict[str, Any]
) -> None:
    for body, field, reason in BAD:
        response = await client.post(CLIENTS, json={**WEB, **body}, headers=admin)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and len(error["details"]) == 1, error
        assert error["details"][0]["field"] == field, (body, error)
        if reason is not None:
            assert error["details"][0]["reason"] == reason, (body, error)
    for body in GOOD:
        created = await _create(client, admin, **body)
        assert created["redirect_uris"] == body["redirect_uris"]  # stored exactly as given
    assert len((await client.get(CLIENTS, headers=admin)).json()["items"]) == len(GOOD)


async def test_patch_changes_the_given_fields_and_checks_the_whole_client(
    client: AsyncTestClient[Any], admin: dict[str, Any], settings: Settings
) -> None:
    created = await _create(client, admin)
    path = f"{CLIENTS}/{created['client_id']}"
    changed = await client.patch(
        path, json={"name": "Renamed", "redirect_uris": ["https://new.example.com/cb"]}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert set(body) == READ_KEYS and body["name"] == "Renamed"
    assert body["redirect_uris"] == ["https://new.example.com/cb"] and body["scopes"] == created["scopes"]
    assert body["updated_at"] > created["updated_at"] and body["created_at"] == created["created_at"]
    for refused, field in (
        ({"grant_types": ["refresh_token"]}, "grant_types"),  # without authorization_code
        ({"redirect_uris": []}, "redirect_uris"),  # authorization_code still granted
        ({"type": "public"}, "body"),  # a client's type is for life (not a field of the patch)
    ):
        response = await client.patch(path, json=refused, headers=admin)
        assert response.status_code == 400, (refused, response.text)
        assert response.json()["error"]["details"][0]["field"] == field
    same = await client.patch(path, json={"name": "Renamed"}, headers=admin)
    assert same.status_code == 200 and same.json() == body  # nothing changed, nothing written
    missing = await client.patch(f"{CLIENTS}/no-such-client", json={"name": "x"}, headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    for method in ("GET", "DELETE"):
        for unknown in ("no-such-client", "%00", "x" * 64):
            assert (await client.request(method, f"{CLIENTS}/{unknown}", headers=admin)).status_code == 404
    [event] = await _sql(settings, "SELECT * FROM audit_events WHERE action = 'client.update'")
    assert event["details"]["fields"] == ["name", "redirect_uris"] and event["target_id"] == created["client_id"]


async def test_a_rotated_secret_replaces_the_old_one_at_once(
    client: AsyncTestClient[Any], admin: dict[str, Any], store: ClientStore, settings: Settings
) -> None:
    created = await _create(client, admin)
    client_id, old = created["client_id"], created["client_secret"]
    rotated = await client.post(f"{CLIENTS}/{client_id}/secret", headers=admin)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["client_secret"]
    assert new != old and set(rotated.json()) == READ_KEYS | {"client_secret"}
    assert await store.authenticate(client_id, old) is None
    assert (await store.authenticate(client_id, new)) is not None
    public = await _create(client, admin, type="public")
    refused = await client.post(f"{CLIENTS}/{public['client_id']}/secret", headers=admin)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "CONFLICT"
    assert (await client.post(f"{CLIENTS}/no-such-client/secret", headers=admin)).status_code == 404
    events = await _sql(settings, "SELECT * FROM audit_events WHERE action = 'client.secret_rotate'")
    assert [(e["target_type"], e["target_id"], e["details"]) for e in events] == [("client", client_id, {})]


async def _session_through(client: AsyncTestClient[Any], settings: Settings, client_id: str | None) -> dict[str, Any]:
    """A login of alice's whose refresh family is marked as opened through `client_id`."""
    tokens = await login(client)
    if client_id is not None:
        await _sql(
            settings,
            "UPDATE refresh_tokens SET client_id = :c, scope = 'openid' WHERE family_id = "
            "(SELECT family_id FROM refresh_tokens WHERE token_hash = :h)",
            c=client_id,
            h=hash_refresh_token(tokens["refresh_token"]),
        )
    # Verified once: the user's revocation state is now cached in Redis, which must be told.
    assert (await client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))).status_code == 200
    return tokens


async def _refresh(client: AsyncTestClient[Any], tokens: dict[str, Any], app: dict[str, Any] | None) -> Any:
    """A session's refresh where it is taken: our own API's, or the token endpoint for the client's."""
    if app is None:
        return await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    return await client.post("/oauth2/token", data=form, auth=(app["client_id"], app["client_secret"]))


async def _revoked(client: AsyncTestClient[Any], tokens: dict[str, Any], app: dict[str, Any] | None = None) -> bool:
    verify = await client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))
    refresh = await _refresh(client, tokens, app)
    if verify.status_code == 401 and refresh.status_code in (400, 401):
        assert verify.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
        return True
    assert verify.status_code == 200 and refresh.status_code == 200, (verify.text, refresh.text)
    return False


async def test_deactivating_or_deleting_a_client_ends_the_sessions_opened_through_it(
    client: AsyncTestClient[Any], admin: dict[str, Any], alice: Any, store: ClientStore, settings: Settings
) -> None:
    kept, doomed = await _create(client, admin, name="Kept"), await _create(client, admin, name="Doomed")
    through_kept = await _session_through(client, settings, kept["client_id"])
    through_doomed = await _session_through(client, settings, doomed["client_id"])
    own = await _session_through(client, settings, None)

    off = await client.patch(f"{CLIENTS}/{kept['client_id']}", json={"is_active": False}, headers=admin)
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert await _revoked(client, through_kept, kept)
    assert await store.authenticate(kept["client_id"], kept["client_secret"]) is None
    assert await store.get(kept["client_id"]) is None
    on = await client.patch(f"{CLIENTS}/{kept['client_id']}", json={"is_active": True}, headers=admin)
    assert on.json()["is_active"] is True and await _revoked(client, through_kept, kept)  # none revived

    # A session of the client whose token was rotated (its successor carries the client) dies too.
    rotated = await _refresh(client, through_doomed, doomed)
    assert rotated.status_code == 200, rotated.text
    deleted = await client.delete(f"{CLIENTS}/{doomed['client_id']}", headers=admin)
    assert deleted.status_code == 204
    assert await _revoked(client, rotated.json(), doomed)
    assert (await client.get(f"{CLIENTS}/{doomed['client_id']}", headers=admin)).status_code == 404
    assert not await _revoked(client, own)  # the user's own login was not the client's

    events = await _sql(
        settings, "SELECT action, details FROM audit_events WHERE action LIKE 'client.%' ORDER BY at, id"
    )
    assert [(e["action"], e["details"].get("sessions")) for e in events] == [
        ("client.create", None),
        ("client.create", None),
        ("client.update", 1),
        ("client.update", None),
        ("client.delete", 1),
    ]


async def test_a_deletion_waits_for_a_rotation_in_flight_and_revokes_its_successor_too(
    client: AsyncTestClient[Any], admin: dict[str, Any], alice: Any, settings: Settings, database_url: str
) -> None:
    """A rotation of the client's session holds alice's row (share lock, as /auth/refresh does)
    and writes a successor (here without the client's id: revocation goes by family) when the deletion comes: the
    deletion waits at her row (a thread commits the rotation once pg_stat_activity shows the
    wait), then revokes the successor with the rest of the family."""
    doomed = await _create(client, admin)
    tokens = await _session_through(client, settings, doomed["client_id"])
    [family] = await _sql(
        settings,
        "SELECT family_id FROM refresh_tokens WHERE token_hash = :h",
        h=hash_refresh_token(tokens["refresh_token"]),
    )
    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    held, seen = threading.Event(), threading.Event()

    async def rotate() -> None:
        rotation, watcher = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            async with rotation.transaction():
                await rotation.execute("SELECT 1 FROM users WHERE id = $1 FOR SHARE", alice.id)
                await rotation.execute(
                    "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, issued_at, expires_at) "
                    "VALUES (gen_random_uuid(), $1, $2, $3, now(), now() + interval '1 day')",
                    secrets.token_hex(32),
                    family["family_id"],
                    alice.id,
                )
                held.set()
                deadline = time.monotonic() + 10
                waiting = (
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                while time.monotonic() < deadline:
                    if await watcher.fetchval(waiting):
                        seen.set()
                        break
                    await asyncio.sleep(0.005)
        finally:
            await rotation.close()
            await watcher.close()

    rotating = threading.Thread(target=lambda: asyncio.run(rotate()))
    rotating.start()
    try:
        assert await asyncio.to_thread(held.wait, 10)
        deleted = await client.delete(f"{CLIENTS}/{doomed['client_id']}", headers=admin)
    finally:
        await asyncio.to_thread(rotating.join, 15)
    assert seen.is_set(), "the deletion never waited for the rotation's lock"
    assert deleted.status_code == 204, deleted.text
    family_tokens = await _sql(
        settings, "SELECT client_id, revoked_at FROM refresh_tokens WHERE family_id = :f", f=family["family_id"]
    )
    assert len(family_tokens) == 2 and all(t["revoked_at"] is not None for t in family_tokens)
    assert {t["client_id"] for t in family_tokens} == {doomed["client_id"], None}
    verify = await client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))
    assert verify.status_code == 401 and verify.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"


async def test_the_list_is_newest_first_a_keyset_page_at_a_time(
    client: AsyncTestClient[Any], admin: dict[str, Any]
) -> None:
    ids = [(await _create(client, admin, name=f"App {i}"))["client_id"] for i in range(3)]
    first = (await client.get(CLIENTS, params={"limit": 2}, headers=admin)).json()
    assert [c["client_id"] for c in first["items"]] == ids[:0:-1] and first["next_cursor"]
    second = (await client.get(CLIENTS, params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin)).json()
    assert [c["client_id"] for c in second["items"]] == ids[:1] and second["next_cursor"] is None
    bad = await client.get(CLIENTS, params={"cursor": "not-a-cursor"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "cursor"


# ---- the CLI ---------------------------------------------------------------------------------


def test_create_client_prints_the_api_answer_as_json_and_names_a_refused_option(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from auth_service.cli.main import main

    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("DATABASE_URL", settings.database.owner_url)
    monkeypatch.setenv("REDIS_URL", settings.redis.url)
    monkeypatch.setenv("JWT_SECRET_KEY", "x" * 40)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = run("create-client", "Dashboard", "--redirect-uri", "https://dash.example.com/cb", "--first-party")
    assert code == 0, err
    created = json.loads(out)
    assert set(created) == READ_KEYS | {"client_secret"} and created["first_party"] is True
    code, out, err = run(
        "create-client", "Phone app", "--public", "--redirect-uri", "com.example.phone:/cb", "--scope", "openid"
    )
    assert code == 0, err
    phone = json.loads(out)
    assert "client_secret" not in phone and phone["type"] == "public" and phone["scopes"] == ["openid"]
    code, out, err = run("create-client", "Bad", "--redirect-uri", "http://dash.example.com/cb")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "error: --redirect-uri: 'http://dash.example.com/cb': http:// only for a loopback host "
        "(127.0.0.1, [::1], localhost); use https://"
    ]
    code, out, _ = run("list-clients")
    assert code == 0 and out.splitlines()[-1] == "2 client(s)" and created["client_secret"] not in out

    async def events() -> list[Any]:
        return await _sql(settings, "SELECT * FROM audit_events ORDER BY at, id")

    rows = asyncio.run(events())
    assert [(e["action"], e["actor_id"], e["details"]["via"]) for e in rows] == [("client.create", None, "cli")] * 2
    assert [e["target_id"] for e in rows] == [created["client_id"], phone["client_id"]]
