"""Account changes when Redis cannot be told: nothing changes, the answer is 503, a retry works.

A password reset must end every session (the revocation protocol tells Redis before the commit).
With Redis down the confirmation rolls back whole: the password stays, the link stays usable."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text

from auth_service.app import create_app
from auth_service.container import Resources
from auth_service.lib.crypto.account_links import token_hash
from tests.conftest import make_settings, run_engine
from tests.factories import DEFAULT_PASSWORD, create_user

NEW = "a new secret after the outage"


async def test_a_reset_confirmation_with_redis_down_changes_nothing_and_can_be_retried(
    database_url: str, own_redis: Any
) -> None:
    settings = make_settings(database_url, own_redis.url)
    user = await create_user(settings, username="ruth")
    links = Resources(settings).account_links
    token_id = uuid.uuid4()
    token = links.token(token_id, "reset")
    engine = run_engine(settings.database.url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                # A reset link is bound to the address it was mailed to (user_tokens.email).
                "INSERT INTO user_tokens (id, purpose, token_hash, user_id, email, expires_at) "
                "VALUES (:id, 'reset', :hash, :user, :email, now() + interval '10 minutes')"
            ),
            {"id": token_id, "hash": token_hash(token), "user": user.id, "email": "ruth@example.com"},
        )
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            own_redis.stop()
            down = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW})
            assert down.status_code == 503 and down.json()["error"]["code"] == "SERVICE_UNAVAILABLE", down.text
            async with engine.connect() as conn:
                used = (await conn.execute(text("SELECT used_at FROM user_tokens"))).scalar()
            assert used is None  # rolled back: the link is still good
            own_redis.start()
            retried = await client.post(
                "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW}
            )
            assert retried.status_code == 204, retried.text
            old = await client.post("/api/v1/auth/login", json={"username": "ruth", "password": DEFAULT_PASSWORD})
            assert old.status_code == 401
    finally:
        await engine.dispose()
