"""Contract fuzzing: schemathesis drives every operation of the app's own OpenAPI document.

Runs in process against the real app (real PostgreSQL and Redis), with a fixed seed and a
modest example count so CI stays under a minute; `just fuzz` runs the same test longer
(FUZZ_EXAMPLES, FUZZ_SEED). Every response must be a non-5xx that matches its documented
status, content type, headers and body schema. Authenticated operations get a real user's
access token; logout, which revokes it, gets a fresh one each time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar import Litestar
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from auth_service.app import create_app
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, create_user

SEED = int(os.environ.get("FUZZ_SEED", "20261128"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
NOT_ME = "/api/v1/auth/not-me"
# Far above what the fuzzer sends, so it exercises the endpoints rather than the limiter.
GENEROUS = "1000000/minute"

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        # No example database: a fixed seed alone decides what runs, in CI and on a laptop.
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        # Every check schemathesis has (call_and_validate's default). On these a schema-valid body
        # may also meet a taken name (409) or their limit (429); their documented 400s are
        # accepted answer by answer (`_documented_refusal`), no other 400.
        "operations": [
            {
                "include-path": path,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["200", "201", "202", "204", "401", "403", "404", "409", "429"]
                    }
                },
            }
            for path in (
                "/api/v1/auth/password-reset/confirm",
                "/api/v1/auth/verify-email",
                "/api/v1/auth/register",
                "/api/v1/users/me/passkeys",
            )
        ],
    }
)
# Operations a fuzzer with a real user's token must get through at least once (the others have
# no generatable success: a signed link, a live refresh token, a loopback peer for /metrics).
MUST_SUCCEED = {
    ("POST", LOGIN),
    ("POST", LOGOUT),
    ("GET", "/api/v1/auth/verify"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/admin/users"),
    ("GET", "/api/v1/admin/login-records"),
    ("GET", "/api/v1/admin/audit-events"),
    ("GET", "/api/v1/admin/clients"),
}
# ... and the "this wasn't me" operations must see a well-formed but unsigned link (the 403 page),
# not only malformed ones (400): the schema's token format is one the fuzzer can produce.
MUST_REFUSE = {("GET", NOT_ME), ("POST", NOT_ME)}

pytestmark = pytest.mark.filterwarnings(
    "ignore::hypothesis.errors.HypothesisDeprecationWarning"
)  # schemathesis internals


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, built without any server (parametrizing needs it at import)."""
    placeholder = make_settings("postgresql://unused@127.0.0.1:9/unused", "redis://127.0.0.1:9/0")
    document: dict[str, Any] = create_app(placeholder).openapi_schema.to_schema()
    return document


DOCUMENT = _document()


class AppUnderTest:
    """The ASGI app schemathesis calls: it forwards to the current test's real app, and holds
    the token the auth provider hands out. (The document is needed at import, the app per test.)"""

    def __init__(self) -> None:
        self.target: Litestar | None = None
        self.shared_token = ""
        self.admin_token = ""
        self.statuses: dict[tuple[str, str], set[int]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "the `app` fixture starts the app under test"
        if scope["type"] != "http":
            await self.target(scope, receive, send)
            return
        seen = self.statuses.setdefault((scope["method"], scope["path"]), set())

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen.add(message["status"])
            await send(message)

        await self.target(scope, receive, watch)

    def login(self, username: str) -> str:
        case = schema[LOGIN]["POST"].Case(body={"username": username, "password": DEFAULT_PASSWORD})
        response = case.call()
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


APP = AppUnderTest()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
schema.app = APP


@schema.auth(refresh_interval=None, retry_on=[])
class RealUserToken:
    """A real logged-in user's access token; logout revokes its token, so it gets a fresh one."""

    def get(self, case: Any, context: Any) -> str:
        if APP.target is None:
            return "collecting"  # schemathesis builds some cases while pytest collects
        if case.path.startswith("/api/v1/admin/"):
            return APP.admin_token  # the admin API as an admin (a plain user's 403s are tested elsewhere)
        return APP.login("leaver") if case.path == LOGOUT else APP.shared_token

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def app(database_url: str, redis_url: str, request: pytest.FixtureRequest) -> Iterator[AppUnderTest]:
    """The real app on the test database, limits far above what the fuzzer sends."""
    settings = make_settings(
        database_url,
        redis_url,
        rate_limit_login=GENEROUS,
        rate_limit_login_failures=GENEROUS,
        rate_limit_refresh=GENEROUS,
        rate_limit_api=GENEROUS,
        rate_limit_public=GENEROUS,
        rate_limit_email=GENEROUS,
        rate_limit_email_ip=GENEROUS,
        registration_enabled="true",  # so the fuzzer reaches registration's rules, not its 404
    )
    for username in ("alice", "reader", "leaver"):  # alice: the login example in the document
        asyncio.run(create_user(settings, username=username))
    asyncio.run(create_user(settings, username="root", roles=["admin"]))
    APP.target = create_app(settings)
    APP.statuses.clear()
    try:
        APP.shared_token = APP.login("reader")
        APP.admin_token = APP.login("root")
        APP.statuses.clear()
        yield APP
        operation = request.node.name.partition("[")[2].rstrip("]")
        method, _, path = operation.partition(" ")
        if (method, path) in MUST_SUCCEED:
            # Proves the fuzzer got past authentication rather than collecting 401s.
            assert any(200 <= status < 300 for status in APP.statuses.get((method, path), ())), APP.statuses
        if (method, path) in MUST_REFUSE:
            assert 403 in APP.statuses.get((method, path), ()), APP.statuses
    finally:
        asgi.shutdown_lifespans()  # close the app's pools before the test database is dropped
        APP.target = None


def test_the_fuzzed_document_is_the_one_the_app_serves(app: AppUnderTest) -> None:
    with asgi.get_client(app) as client:
        response = client.get("/docs/openapi.json")
    assert response.status_code == 200
    assert response.json() == DOCUMENT


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the app is per test, not per example
def test_every_operation_honours_its_documented_contract(case: Any, app: AppUnderTest) -> None:
    response = case.call()
    # The documented refusals of schema-valid input, and only they, skip positive_data_acceptance
    # (every other check still runs on those answers).
    excluded = [positive_data_acceptance] if _documented_refusal(case.path, response) else []
    case.validate_response(response, excluded_checks=excluded)


# Rules no schema can state: a password that contains its own username or is on a list (a rule
# across fields, or over 30,000 entries), and, with PASSWORD_MIN_SCORE, one too easy to guess.
_POLICY_ACROSS_FIELDS = {"contains_username", "too_common", "too_weak"}
_LINKS = {"/api/v1/auth/password-reset/confirm", "/api/v1/auth/verify-email"}
# The OAuth client rules no schema states: across fields (a public client's grants, refresh_token
# without authorization_code, authorization_code without a redirect URI) and what a redirect URI's
# scheme and host may be (domain/oauth/client_rules.py).
_CLIENT_RULES = {"public_client", "needs_authorization_code", "required", "insecure", "userinfo", "no_host", "scheme"}


def _documented_refusal(path: str, response: Any) -> bool:
    """A 400 the docs name for schema-valid input: LINK_INVALID on the two link endpoints (a
    link's token is any string; only a live one works), the password policy's rules across
    fields on sign-up, a passkey registration that does not verify, an OAuth client's rules across fields, and an address refused after NFKC (U+00AF becomes a space and a combining
    mark: two words, not one mailbox), a rule over the normalised form no pattern can state."""
    kind = response.headers.get("content-type") or [""]  # schemathesis keeps each header's values in a list
    if response.status_code != 400 or not str(kind[0] if isinstance(kind, list) else kind).startswith(
        "application/json"
    ):
        return False
    error = response.json().get("error", {})
    details = error.get("details") or []
    if path in _LINKS and error.get("code") == "LINK_INVALID":
        return True
    if error.get("code") != "VALIDATION_ERROR" or not details:
        return False
    if path == "/api/v1/users/me/passkeys" and all(
        d.get("field") == "credential" and d.get("reason") in ("expired", "invalid") for d in details
    ):
        return True  # a signed answer to options only the browser holds: one that does not verify
    if path.startswith("/api/v1/admin/clients") and all(d.get("reason") in _CLIENT_RULES for d in details):
        return True
    if path == "/api/v1/auth/register" and all(
        d.get("field") == "password" and d.get("reason") in _POLICY_ACROSS_FIELDS for d in details
    ):
        return True
    return [d.get("field") for d in details] == ["email"] and all(
        d.get("message", "").startswith("not an e-mail address") for d in details
    )


# The reported run: schemathesis's defaults (every check, positive_data_acceptance with its own
# expected statuses) and seed 611, on the "this wasn't me" operations.
not_me_schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": 611,
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
).include(path=NOT_ME)
not_me_schema.app = APP


@not_me_schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_schema_valid_not_me_link_is_answered_as_documented(case: Any, app: AppUnderTest) -> None:
    """A token that matches the documented format but carries no valid signature is a request the
    schema allows: it gets a status every checker accepts for well-formed data (403), not a 400."""
    case.call_and_validate()
