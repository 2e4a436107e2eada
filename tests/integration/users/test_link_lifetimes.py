"""Every e-mailed link lives as long as its setting says, and its mail says so: the lifetimes are
declared once (settings/policy.py LinkSettings), not repeated as constants beside their use."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text

from auth_service.app import create_app
from auth_service.domain.notifications.messages import suspicious_alert
from auth_service.settings import describe
from tests.conftest import make_settings, run_engine
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.conftest import login


async def _links(settings: Any) -> dict[str, tuple[Any, float]]:
    """kind of mail -> (its details, hours its link lives)."""
    async with run_engine(settings.database.url).connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT n.kind, n.payload->'details' AS details,"
                    " extract(epoch FROM t.expires_at - t.created_at) / 3600 AS hours"
                    " FROM notifications n JOIN user_tokens t ON t.id::text = n.payload->>'token_id'"
                )
            )
        ).all()
    return {row.kind: (row.details, float(row.hours)) for row in rows}


async def test_reset_verification_and_invitation_links_live_and_say_their_settings(
    database_url: str, redis_url: str
) -> None:
    settings = make_settings(
        database_url,
        redis_url,
        password_reset_ttl_minutes="11",
        email_verify_ttl_hours="5",
        invitation_ttl_hours="7",
    )
    await create_user(settings, username="root", roles=["admin"])
    await create_user(settings, username="alice")
    async with AsyncTestClient(app=create_app(settings)) as client:
        admin = bearer((await login(client, "root"))["access_token"])
        invited = await client.post(
            "/api/v1/admin/users", json={"username": "carol", "email": "carol@example.com"}, headers=admin
        )
        assert invited.status_code == 201, invited.text
        assert (
            await client.post("/api/v1/auth/password-reset", json={"email": "alice@example.com"})
        ).status_code == 202
        alice = bearer((await login(client, "alice"))["access_token"])
        moved = await client.patch(
            "/api/v1/users/me",
            json={"email": "alice2@example.com", "current_password": DEFAULT_PASSWORD},
            headers=alice,
        )
        assert moved.status_code == 200, moved.text
        for _ in range(100):  # the reset request's work runs after its answer
            links = await _links(settings)
            if "password_reset" in links:
                break
            await asyncio.sleep(0.05)
    assert links["invitation"][0]["hours"] == 7 and abs(links["invitation"][1] - 7) < 0.01
    assert links["password_reset"][0]["minutes"] == 11 and abs(links["password_reset"][1] - 11 / 60) < 0.01
    assert links["verify_email"][0]["hours"] == 5 and abs(links["verify_email"][1] - 5) < 0.01


def test_the_suspicious_login_mail_states_the_window_it_was_judged_by() -> None:
    mail = suspicious_alert("alice", {"reasons": ["new_device"], "new_device_days": 9}, "https://x/not-me")
    assert "in the last 9 days" in mail.text and "30 days" not in mail.text


def test_every_setting_is_declared_with_its_variable_and_a_description() -> None:
    rows = describe()
    variables = [row.variable for row in rows]
    assert len(variables) == len(set(variables)) >= 80
    assert all(row.variable.isupper() and row.description for row in rows)
    assert {"EMAIL_VERIFY_TTL_HOURS", "INVITATION_TTL_HOURS", "PASSWORD_RESET_TTL_MINUTES"} <= set(variables)
    assert dt.timedelta(hours=48) == dt.timedelta(
        hours=next(r.default for r in rows if r.variable == "EMAIL_VERIFY_TTL_HOURS")
    )
