"""With SECRET_KEY set, a new JWT signing key breaks no e-mailed link and no refresh grace: the
API before the key change issues them, the API after it honours them (lib/crypto/derive.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text

from auth_service.app import create_app
from auth_service.container import Resources
from auth_service.settings import Settings
from tests.conftest import make_settings, run_engine
from tests.integration.conftest import login

MASTER = "master-" + "m" * 40
NEW_PASSWORD = "a passphrase set after the key change"


async def _reset_token(client: AsyncTestClient[Any], settings: Settings) -> str:
    assert (await client.post("/api/v1/auth/password-reset", json={"email": "alice@example.com"})).status_code == 202
    for _ in range(100):  # the lookup runs after the response
        async with run_engine(settings.database.url).connect() as conn:
            token_id = (
                await conn.execute(text("SELECT payload->>'token_id' FROM notifications WHERE kind = 'password_reset'"))
            ).scalar_one_or_none()
        if token_id:
            return Resources(settings).account_links.token(uuid.UUID(token_id), "reset")
        await asyncio.sleep(0.05)
    raise AssertionError("no reset mail was queued")


async def test_a_new_jwt_key_keeps_reset_links_and_the_refresh_grace_once_secret_key_is_set(
    database_url: str, redis_url: str, alice: Any
) -> None:
    before = make_settings(database_url, redis_url, secret_key=MASTER)
    after = make_settings(database_url, redis_url, secret_key=MASTER, jwt_secret_key="rotated-" + "r" * 40)
    async with AsyncTestClient(app=create_app(before)) as old_api:
        first = await login(old_api)
        rotated = await old_api.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        reset = await _reset_token(old_api, before)
    async with AsyncTestClient(app=create_app(after)) as new_api:
        # The other tab repeats the spent token within the grace: the same successor, no theft alarm.
        again = await new_api.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert again.status_code == 200, again.text
        assert again.json()["refresh_token"] == rotated.json()["refresh_token"]
        done = await new_api.post(
            "/api/v1/auth/password-reset/confirm", json={"token": reset, "new_password": NEW_PASSWORD}
        )
        assert done.status_code == 204, done.text
        assert (await login(new_api, password=NEW_PASSWORD))["access_token"]
