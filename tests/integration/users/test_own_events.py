"""The user's own security events land in the audit log, in the transaction of the change: a
password change, a reset, an e-mail change, ending a session, a self-registration; and the
admin API's and audit log's counters reach /metrics."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text

from auth_service.app import create_app
from auth_service.settings import Settings
from tests.conftest import make_settings, run_engine
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.conftest import login

NEW = "a completely different passphrase"


async def _events(settings: Settings) -> list[Any]:
    async with run_engine(settings.database.url).connect() as conn:
        rows = await conn.execute(text("SELECT * FROM audit_events ORDER BY at, id"))
        return list(rows.mappings())


async def test_password_change_email_change_and_ending_a_session_are_audited_as_the_user(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    other = await login(client)
    tokens = await login(client)
    ended = await client.delete(f"/api/v1/users/me/sessions/{_sid(other)}", headers=bearer(tokens["access_token"]))
    assert ended.status_code == 204
    changed = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW},
        headers={**bearer(tokens["access_token"]), "X-Request-ID": "own-change-1"},
    )
    assert changed.status_code == 200, changed.text
    fresh = changed.json()["access_token"]
    moved = await client.patch(
        "/api/v1/users/me",
        json={"email": "alice@elsewhere.example.com", "current_password": NEW},
        headers=bearer(fresh),
    )
    assert moved.status_code == 200, moved.text
    events = await _events(settings)
    assert [e["action"] for e in events] == ["session.revoke", "password.change", "email.change"]
    assert all(e["actor_id"] == alice.id and e["target_id"] == str(alice.id) for e in events)
    assert events[0]["details"] == {"session_id": _sid(other)}
    assert events[1]["request_id"] == "own-change-1" and events[1]["details"] == {}
    # A refused change writes nothing.
    wrong = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": "not my password at all", "new_password": "yet another passphrase"},
        headers=bearer(fresh),
    )
    assert wrong.status_code == 401 and len(await _events(settings)) == 3


def _sid(tokens: dict[str, Any]) -> str:
    import base64
    import json

    payload = tokens["access_token"].split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"])


async def test_a_reset_and_a_registration_are_audited(
    alice: Any, settings: Settings, database_url: str, redis_url: str
) -> None:
    open_settings = make_settings(database_url, redis_url, registration_enabled=True)
    async with AsyncTestClient(app=create_app(open_settings)) as client:
        assert (
            await client.post("/api/v1/auth/password-reset", json={"email": "alice@example.com"})
        ).status_code == 202
        async with run_engine(settings.database.url).connect() as conn:
            token_id = (
                await conn.execute(text("SELECT id FROM user_tokens WHERE user_id = :u"), {"u": alice.id})
            ).scalar_one()
        token = client.app.state.resources.account_links.token(uuid.UUID(str(token_id)), "reset")
        done = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW})
        assert done.status_code == 204, done.text
        registered = await client.post(
            "/api/v1/auth/register", json={"username": "newcomer", "email": "newcomer@example.com", "password": NEW}
        )
        assert registered.status_code == 202, registered.text
    events = await _events(settings)
    assert [e["action"] for e in events] == ["password.reset", "account.register"]
    assert events[0]["actor_id"] == alice.id and events[0]["target_id"] == str(alice.id)
    async with run_engine(settings.database.url).connect() as conn:
        newcomer = (await conn.execute(text("SELECT id FROM users WHERE username = 'newcomer'"))).scalar_one()
    assert events[1]["actor_id"] == newcomer and events[1]["actor_ip"]


async def test_admin_and_audit_counters_reach_metrics(database_url: str, redis_url: str, settings: Settings) -> None:
    root = await create_user(settings, username="root", roles=["admin"])
    await create_user(settings, username="plain")
    token = "operator-token-1234567890"
    metered = make_settings(database_url, redis_url, metrics_token=token)
    async with AsyncTestClient(app=create_app(metered)) as client:
        admin = bearer((await login(client, "root"))["access_token"])
        plain = bearer((await login(client, "plain"))["access_token"])

        def value(text_: str, name: str, **labels: str) -> float:
            want = "".join(f'(?=[^}}]*{k}="{re.escape(v)}")' for k, v in labels.items())
            found = re.findall(rf"^{name}\{{{want}[^}}]*\}} ([0-9.e+]+)$", text_, re.MULTILINE)
            return sum(float(v) for v in found)

        before = (await client.get("/metrics", headers=bearer(token))).text
        assert (await client.get("/api/v1/admin/users", headers=plain)).status_code == 403
        assert (await client.get("/api/v1/admin/users")).status_code == 401
        assert (await client.get(f"/api/v1/admin/users/{uuid.uuid4()}", headers=admin)).status_code == 404
        assert (await client.post(f"/api/v1/admin/users/{root.id}/logout", headers=admin)).status_code == 204
        after = (await client.get("/metrics", headers=bearer(token))).text
    for labels, delta in (
        ({"operation": "users.list", "outcome": "forbidden"}, 1),
        ({"operation": "users.list", "outcome": "unauthenticated"}, 1),
        ({"operation": "users.get", "outcome": "not_found"}, 1),
        ({"operation": "users.logout", "outcome": "ok"}, 1),
        ({"operation": "users.delete", "outcome": "ok"}, 0),
    ):
        assert value(after, "admin_requests_total", **labels) - value(before, "admin_requests_total", **labels) == delta
    logout_all = {"action": "user.logout_all"}
    assert value(after, "audit_events_total", **logout_all) - value(before, "audit_events_total", **logout_all) == 1
    assert 'audit_events_total{action="user.mfa_reset"' in after.replace('otel_scope_name="auth_service",', "")
