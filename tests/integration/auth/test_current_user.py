"""The current_user dependency and the requires_role guard that the next endpoints (account,
admin API) are built on, on a probe route registered on the real app."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.lib.principal import CurrentUser, requires_role
from auth_service.settings import Settings
from tests.factories import bearer, create_user
from tests.integration.conftest import login


@get("/probe/me", sync_to_thread=False)
def me(current_user: NamedDependency[CurrentUser]) -> dict[str, Any]:
    return {"id": current_user.id, "username": current_user.username, "roles": list(current_user.roles)}


@get("/probe/admin", guards=[requires_role("admin")], sync_to_thread=False)
def admin_only(current_user: NamedDependency[CurrentUser]) -> dict[str, Any]:
    return {"id": current_user.id}


def _app(settings: Settings) -> Any:
    app = create_app(settings)
    app.register(me)
    app.register(admin_only)
    return app


async def test_current_user_is_the_tokens_user_and_needs_a_live_token(settings: Settings) -> None:
    alice = await create_user(settings, username="alice", roles=["user"])
    async with AsyncTestClient(app=_app(settings)) as client:
        anonymous = await client.get("/probe/me")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
        tokens = await login(client)
        response = await client.get("/probe/me", headers=bearer(tokens["access_token"]))
        assert response.status_code == 200
        assert response.json() == {"id": str(alice.id), "username": "alice", "roles": ["user"]}
        logout = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]), json={})
        assert logout.status_code == 204
        revoked = await client.get("/probe/me", headers=bearer(tokens["access_token"]))
        assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"


async def test_requires_role_refuses_other_roles_with_403_and_no_token_with_401(settings: Settings) -> None:
    await create_user(settings, username="alice", roles=["user"])
    root = await create_user(settings, username="root", roles=["admin"])
    async with AsyncTestClient(app=_app(settings)) as client:
        anonymous = await client.get("/probe/admin")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
        user = await login(client, "alice")
        refused = await client.get("/probe/admin", headers=bearer(user["access_token"]))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"
        admin = await login(client, "root")
        allowed = await client.get("/probe/admin", headers=bearer(admin["access_token"]))
        assert allowed.status_code == 200 and allowed.json() == {"id": str(root.id)}
        await client.post("/api/v1/auth/logout", headers=bearer(admin["access_token"]), json={"everywhere": True})
        gone = await client.get("/probe/admin", headers=bearer(admin["access_token"]))
        assert gone.status_code == 401 and gone.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
