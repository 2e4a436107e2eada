"""The authenticated subject and the requires_role guard that the endpoints are built on, on
probe routes registered on the real app: one that declares `auth` (the authentication
middleware verifies it before the handler runs) and ones that only ask for the `subject`
dependency (verified on demand, by the same check)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.lib.http import AUTH, BEARER
from auth_service.lib.principal import Subject, requires_role
from auth_service.settings import Settings
from tests.factories import bearer, create_user
from tests.integration.conftest import login


@get("/probe/me", sync_to_thread=False)
def me(subject: NamedDependency[Subject]) -> dict[str, Any]:
    return {"id": subject.user_id, "username": subject.username, "roles": list(subject.roles), "how": subject.how}


@get("/probe/declared", opt={AUTH: BEARER}, sync_to_thread=False)
def declared(request: Request[Any, Any, Any]) -> dict[str, Any]:
    found = request.scope.get("subject")  # left by the middleware: the handler never asked for it
    return {"id": found.user_id if isinstance(found, Subject) else None}


@get("/probe/admin", guards=[requires_role("admin")], sync_to_thread=False)
def admin_only(subject: NamedDependency[Subject]) -> dict[str, Any]:
    return {"id": subject.user_id}


def _app(settings: Settings) -> Any:
    app = create_app(settings)
    app.register(me)
    app.register(declared)
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
        assert response.json() == {"id": str(alice.id), "username": "alice", "roles": ["user"], "how": "bearer"}
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


async def test_a_route_that_declares_auth_is_authenticated_before_its_handler(settings: Settings) -> None:
    alice = await create_user(settings, username="alice", roles=["user"])
    async with AsyncTestClient(app=_app(settings)) as client:
        anonymous = await client.get("/probe/declared")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
        tokens = await login(client)
        response = await client.get("/probe/declared", headers=bearer(tokens["access_token"]))
        assert response.status_code == 200 and response.json() == {"id": str(alice.id)}
        await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]), json={})
        revoked = await client.get("/probe/declared", headers=bearer(tokens["access_token"]))
        assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"


def test_every_route_that_asks_for_the_subject_declares_auth(settings: Settings) -> None:
    """The authentication layer runs before guards and dependencies on the routes that declare
    it; a route of the app that asks for the subject without declaring it would authenticate
    late (after its other dependencies), so none does."""
    app = create_app(settings)
    asking = [
        (route.path, handler.handler_name)
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if "subject" in handler.parsed_fn_signature.parameters
    ]
    undeclared = [
        (route.path, handler.handler_name)
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if "subject" in handler.parsed_fn_signature.parameters and not handler.opt.get(AUTH)
    ]
    assert len(asking) >= 5 and undeclared == []
